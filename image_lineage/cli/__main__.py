"""``python -m image_lineage.cli <command> [flags]`` (what torchrun starts for a multi-process fine-tune)."""

from image_lineage.cli import main

raise SystemExit(main())
