"""Log one version of an image folder: params, class counts, samples, manifest, diff, dataset input.

The command ``image-lineage log-folder-dataset`` (:mod:`image_lineage.cli`), as ``mlflow run . -e log_folder_dataset`` runs it.

    mlflow run . -e log_folder_dataset -P version=v2 --experiment-name HW_Image_Dataset_<id> --env-manager local
    python -m entrypoints.log_folder_dataset --version v2 --experiment-name HW_Image_Dataset_<id>
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("log_folder_dataset")

if __name__ == "__main__":
    raise SystemExit(main())
