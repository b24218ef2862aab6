"""Check a dataset for leakage: exact and near-duplicate images, across splits and across labels.

The command ``image-lineage check-dataset`` (:mod:`image_lineage.cli`), as ``mlflow run . -e check_dataset`` runs it.

    mlflow run . -e check_dataset -P source=<folder with train/ and val/, or a COCO folder> --env-manager local
    python -m entrypoints.check_dataset --source ../data/pets --on-leakage fail --experiment-name checks
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("check_dataset")

if __name__ == "__main__":
    raise SystemExit(main())
