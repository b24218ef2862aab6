"""Log an image dataset in its Hugging Face form: Datasets-panel lineage with a content digest.

The command ``image-lineage log-hf-dataset`` (:mod:`image_lineage.cli`), as ``mlflow run . -e log_hf_dataset`` runs it.

    mlflow run . -e log_hf_dataset -P source=image_dataset/v2 --env-manager local
    mlflow run . -e log_hf_dataset -P source=coco/sample --env-manager local
    mlflow run . -e log_hf_dataset -P source=hub:detection-datasets/coco -P split=validation --env-manager local
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("log_hf_dataset")

if __name__ == "__main__":
    raise SystemExit(main())
