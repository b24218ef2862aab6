"""Log one version of an image folder: params, class counts, samples, manifest, diff, dataset input.

    mlflow run . -e log_folder_dataset -P version=v2 --experiment-name HW_Image_Dataset_<id> --env-manager local
    python -m entrypoints.log_folder_dataset --version v2 --experiment-name HW_Image_Dataset_<id>
"""

from __future__ import annotations

import argparse

from image_lineage.cli import add_image_arguments, add_snapshot_argument, optional, parse_count, run_entry_point
from image_lineage.folder_dataset import FolderVersionRequest, log_folder_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Log <data_dir>/<version>/<class>/<image> as one MLflow run: params dataset_version, "
        "dataset_name, num_classes, class_names; metrics total_images and class_<name>_count; artifacts "
        "samples/, manifest.json, diff.json, class_counts.png (and archive/<version>.tar for large classes); "
        "a dataset input with a content digest; tag dataset.digest."
    )
    parser.add_argument("--data-dir", default="image_dataset", help="folder holding the version folders")
    parser.add_argument("--version", default="v1", help="version folder to log, e.g. v1")
    parser.add_argument("--dataset-name", default="cat_dog_dataset")
    parser.add_argument("--dataset-semver", type=optional, default="auto",
                        help="logged as param dataset_version; auto derives it from --version (v1 -> 1.0.0)")
    parser.add_argument("--run-name", type=optional, default="auto", help="run name; auto gives image_<version>")
    parser.add_argument("--max-samples-per-class", type=parse_count, default=50,
                        help="images per class uploaded as samples/; larger classes also go into one archive")
    add_image_arguments(parser)
    add_snapshot_argument(parser)
    parser.add_argument("--experiment-name", default=None,
                        help="experiment to log into when not started by `mlflow run`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = FolderVersionRequest(**vars(args))
    return run_entry_point(lambda: log_folder_version(request))


if __name__ == "__main__":
    raise SystemExit(main())
