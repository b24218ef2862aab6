"""Compare what an experiment logged: dataset versions, model versions, lineage (printed, CSV/MD/HTML, plots).

    mlflow run . -e compare --experiment-name HW_Image_Dataset_<id> --env-manager local
    mlflow run . -e compare --experiment-name <name> -P models=wine-quality-classifier --env-manager local
"""

from __future__ import annotations

import argparse

from image_lineage.cli import optional, optional_list, parse_bool, run_entry_point
from image_lineage.compare import compare_experiment, compared_experiment
from image_lineage.tracking import start_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Print one row per dataset version of an experiment (run name, version, total images, "
        "one column per class, num classes, digest, diff), a table per registered model (version, algorithm, "
        "metrics, aliases, dataset digest, run id) and the lineage (datasets each model version used); log them "
        "under compare/ as CSV, Markdown and HTML with PNG plots (class counts per version, metrics per version)."
    )
    parser.add_argument("--experiment", type=optional, default="none",
                        help="experiment whose versions are compared; the compare run is logged into it. none: "
                        "the run's own experiment (mlflow run --experiment-name), or MLFLOW_EXPERIMENT_NAME")
    parser.add_argument("--models", type=optional_list, default="auto",
                        help="comma-separated registered model names; auto: those with versions from this experiment")
    parser.add_argument("--output-dir", default="compare_output", help="local folder for the tables and plots")
    parser.add_argument("--screenshots", type=parse_bool, default=False,
                        help="true: PNGs of the MLflow UI (experiment, a run's datasets, a model) with headless Chromium")
    parser.add_argument("--run-name", default="compare")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        experiment = compared_experiment(args.experiment)  # fails before opening a run when it is wrong
        with start_run(experiment.name, args.run_name):
            compare_experiment(experiment.name, args.output_dir, args.models, args.screenshots)

    return run_entry_point(work)


if __name__ == "__main__":
    raise SystemExit(main())
