"""Compare what an experiment logged: dataset versions, model versions, lineage (printed, CSV/MD/HTML, plots).

The command ``image-lineage compare`` (:mod:`image_lineage.cli`), as ``mlflow run . -e compare`` runs it.

    mlflow run . -e compare --experiment-name HW_Image_Dataset_<id> --env-manager local
    mlflow run . -e compare --experiment-name <name> -P models=wine-quality-classifier --env-manager local
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("compare")

if __name__ == "__main__":
    raise SystemExit(main())
