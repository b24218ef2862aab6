"""Train three versions per suite, register them, let measured accuracy assign the aliases.

The command ``image-lineage train-registry`` (:mod:`image_lineage.cli`), as ``mlflow run . -e train_registry`` runs it.

    mlflow run . -e train_registry -P suite=wine --env-manager local
    mlflow run . -e train_registry -P suite=mnist -P mnist_dir=../shared/data/mnist/raw -P epochs_scale=0.1 --env-manager local
"""

from image_lineage.cli import entry_point

build_parser, main = entry_point("train_registry")

if __name__ == "__main__":
    raise SystemExit(main())
