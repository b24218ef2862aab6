"""Compare what an experiment logged: the dataset-version table (printed, CSV, Markdown, logged).

    mlflow run . -e compare -P experiment=HW_Image_Dataset_<id> --env-manager local
"""

from __future__ import annotations

import argparse

from image_lineage.cli import exit_with, run_entry_point
from image_lineage.compare import compare_datasets, find_experiment
from image_lineage.tracking import start_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Print one row per dataset version of an experiment (run name, version, total images, "
        "one column per class, num classes, digest, diff) and log it as compare/dataset_versions.csv and .md."
    )
    parser.add_argument("--experiment", required=True, help="experiment whose dataset versions are compared")
    parser.add_argument("--output-dir", default="compare_output", help="local folder for the CSV and Markdown")
    parser.add_argument("--run-name", default="compare")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        find_experiment(args.experiment)  # fail before opening a run when the name is wrong
        with start_run(args.experiment, args.run_name):
            compare_datasets(args.experiment, args.output_dir)

    return run_entry_point(work)


if __name__ == "__main__":
    exit_with(main())
