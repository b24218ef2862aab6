"""``python -m image_lineage <command> [flags]``: the ``image-lineage`` command."""

from image_lineage.cli import main

raise SystemExit(main())
