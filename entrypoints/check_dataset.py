"""Check a dataset for leakage: exact and near-duplicate images, across splits and across labels.

    mlflow run . -e check_dataset -P source=<folder with train/ and val/, or a COCO folder> --env-manager local
    python -m entrypoints.check_dataset --source ../data/pets --on-leakage fail --experiment-name checks
"""

from __future__ import annotations

import argparse

from image_lineage.cli import add_image_arguments, optional, parse_count, run_entry_point
from image_lineage.core import ON_LEAKAGE_CHOICES
from image_lineage.dataset_check import CheckRequest, check_dataset
from image_lineage.perceptual import DEFAULT_THRESHOLD


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Find exact duplicates (same sha256), near-duplicates (perceptual hash: resized, re-encoded, "
        "cropped, brightened copies), leakage (such a pair in two splits) and label conflicts in an image folder "
        "(train*/, val*/, test*/ splits of class folders, or class folders) or a COCO folder. Logs metrics "
        "quality/exact_duplicate_pairs, quality/near_duplicate_pairs, quality/leakage_pairs, quality/label_conflicts, "
        "tag quality.status (clean, duplicates, leakage), artifacts quality/pairs.csv and quality/report.html."
    )
    parser.add_argument("--source", default="image_dataset/v2", help="image folder or COCO folder")
    add_image_arguments(parser, leakage_check=False)
    parser.add_argument("--on-leakage", choices=ON_LEAKAGE_CHOICES, default="warn",
                        help="warn, fail (the run ends FAILED, its report logged) or ignore")
    parser.add_argument("--threshold", type=parse_count, default=DEFAULT_THRESHOLD,
                        help="near-duplicate distance in bits of the 64-bit perceptual hash")
    parser.add_argument("--run-name", type=optional, default="auto", help="auto: check_<dataset name>")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = CheckRequest(**vars(args))
    return run_entry_point(lambda: check_dataset(request))


if __name__ == "__main__":
    raise SystemExit(main())
