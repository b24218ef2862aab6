"""The whole workflow on the bundled data, offline: `mlflow run .` runs this.

The command ``image-lineage workflow`` (:mod:`image_lineage.cli`), as ``mlflow run . -e main`` runs it.

    Steps (child runs of this run, each reused when an earlier FINISHED run had the same inputs): image_dataset
    v1 and v2, the Hugging Face form of v2 and of the COCO sample, a tiny coco_finetune, train_registry (wine and
    the MNIST stand-in), then compare.
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("main")

if __name__ == "__main__":
    raise SystemExit(main())
