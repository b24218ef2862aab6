"""Download COCO 2017 val (images + annotations) into the standard layout; see coco/README.md.

    python coco/download_coco.py --dest coco/val2017_full [--max-images 500] [--base-url file:///mirror]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.coco_download import main  # noqa: E402

if __name__ == "__main__":
    main()
