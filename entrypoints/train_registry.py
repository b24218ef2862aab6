"""Train three versions per suite, register them, let measured accuracy assign the aliases.

    mlflow run . -e train_registry -P suite=wine --env-manager local
    mlflow run . -e train_registry -P suite=mnist -P mnist_dir=../shared/data/mnist/raw -P epochs_scale=0.1 --env-manager local
"""

from __future__ import annotations

import argparse

from image_lineage.cli import parse_count, run_entry_point
from image_lineage.mnist import SOURCES
from image_lineage.train_registry import SUITES, RegistryRequest, run_registry_workflow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Per suite, three versions in child runs (params, accuracy/F1 or per-epoch loss/accuracy, "
        "train/test inputs with content digests), registered as wine-quality-classifier / mnist-digit-classifier "
        "with description, tags and aliases baseline, champion, staging; the champion predicts; the comparison "
        "table is logged as registry/*_versions.md and .csv."
    )
    parser.add_argument("--suite", choices=SUITES, default="both")
    parser.add_argument("--mnist-dir", default="mnist_data",
                        help="folder with MNIST IDX files (train and/or t10k, .gz or not); downloaded when empty")
    parser.add_argument("--mnist-source", choices=SOURCES, default="idx",
                        help="idx: the files in --mnist-dir; sklearn-digits: scikit-learn's 8x8 digits at 28x28, offline")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiplies every version's epochs (50/100/150), at least 1 epoch each")
    parser.add_argument("--team", default="ml-platform", help="registered-model tag 'team'")
    parser.add_argument("--seed", type=parse_count, default=42)
    parser.add_argument("--run-name", default="train_registry")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = RegistryRequest(**vars(args))
    return run_entry_point(lambda: run_registry_workflow(request))


if __name__ == "__main__":
    raise SystemExit(main())
