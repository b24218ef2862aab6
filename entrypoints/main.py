"""The whole workflow on the bundled data, offline: `mlflow run .` runs this.

Steps (child runs of this run, each reused when an earlier FINISHED run had the same inputs): image_dataset
v1 and v2, the Hugging Face form of v2 and of the COCO sample, a tiny coco_finetune, train_registry (wine and
the MNIST stand-in), then compare.
"""

from __future__ import annotations

import argparse

from image_lineage.cli import run_entry_point
from image_lineage.core import IMAGE_CHECK_CHOICES
from image_lineage.workflow import MainRequest, run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run every entry point on the bundled data as child runs (reusing unchanged steps) and "
        "finish with compare; logs workflow_steps.json (step, entry point, parameters, run id, reused, seconds)."
    )
    parser.add_argument("--image-dir", default="image_dataset", help="cat/dog version folders")
    parser.add_argument("--coco-dir", default="coco/sample", help="COCO folder for the HF and detection steps")
    parser.add_argument("--image-check", choices=IMAGE_CHECK_CHOICES, default="structure",
                        help="image check of every step that reads images: structure, decode or none")
    parser.add_argument("--project-dir", default=".", help="the project the steps run from")
    parser.add_argument("--run-name", default="main")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = MainRequest(**vars(args))
    return run_entry_point(lambda: run_main(request))


if __name__ == "__main__":
    raise SystemExit(main())
