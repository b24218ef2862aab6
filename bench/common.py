"""Data builders shared by the benchmarks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "catsdogs"


def build_folder(photos: Path, version_dir: Path, count: int) -> int:
    """Write ``count`` re-encoded JPEGs split over the photo classes; return the total bytes."""
    sources = [(label.name, path) for label in sorted(photos.iterdir()) if label.is_dir() for path in sorted(label.glob("*.jpg"))]

    decoded = {}
    for _, source in sources:  # decode each photo once; copies are stamped and re-encoded below
        with Image.open(source) as image:
            decoded[source] = image.convert("RGB")

    def write(index: int) -> int:
        label, source = sources[index % len(sources)]
        image = decoded[source].copy()
        # a unique stamp in the corner makes every copy a different file with a different hash
        for bit in range(16):
            image.putpixel((bit, 0), (255, 255, 255) if index >> bit & 1 else (0, 0, 0))
        target = version_dir / label / f"{label}_{index:05d}.jpg"
        image.save(target, quality=90)
        return target.stat().st_size

    for label in {label for label, _ in sources}:
        (version_dir / label).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(write, range(count)))
