"""Log an image dataset in its Hugging Face form: Datasets-panel lineage with a content digest.

    mlflow run . -e log_hf_dataset -P source=image_dataset/v2 --env-manager local
    mlflow run . -e log_hf_dataset -P source=coco/sample --env-manager local
    mlflow run . -e log_hf_dataset -P source=hub:detection-datasets/coco -P split=validation --env-manager local
"""

from __future__ import annotations

import argparse

from image_lineage.cli import add_image_arguments, optional, run_entry_point
from image_lineage.hf_dataset import CONTEXT_CHOICES, SPLIT_CHOICES, HfRequest, log_hf_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Load an image folder, a COCO folder or hub:<name> as datasets.Dataset (one per split) and "
        "log each with mlflow.data.from_huggingface + log_input (content digest, reloadable source); params "
        "num_rows, num_classes, class_names, features, splits; metrics <split>/rows_<class> or "
        "<split>/instances_<category>; artifacts hf/<split>/features.json and class_balance.png; tag dataset.digest."
    )
    parser.add_argument("--source", default="image_dataset/v2", help="image folder, COCO folder, or hub:<name>")
    parser.add_argument("--split", choices=SPLIT_CHOICES, default="all",
                        help="split to log; all logs every split found (train*/val*/test* folders or annotation files)")
    parser.add_argument("--name", type=optional, default="auto", help="dataset name in the Datasets panel (auto: from the source)")
    parser.add_argument("--targets", type=optional, default="auto", help="label column (auto: 'label' when present)")
    parser.add_argument("--context", choices=CONTEXT_CHOICES, default="training")
    parser.add_argument("--revision", default="main", help="hub datasets only: branch, tag or commit")
    add_image_arguments(parser)
    parser.add_argument("--run-name", type=optional, default="auto", help="auto: hf_<name>")
    parser.add_argument("--experiment-name", default=None, help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = HfRequest(**vars(args))
    return run_entry_point(lambda: log_hf_dataset(request))


if __name__ == "__main__":
    raise SystemExit(main())
