"""Image-dataset lineage for MLflow: prove which images trained which model.

The public API is what ``__all__`` names (everything else may move); each has a docstring example::

    import mlflow, image_lineage

    pets = image_lineage.from_image_folder("data/pets/v2")     # an mlflow.data Dataset: the content digest
    with mlflow.start_run():
        image_lineage.log_dataset(pets, context="training")    # or mlflow.log_input(pets, context="training")
    image_lineage.models_trained_on(pets.digest)               # which registered model versions used it

Installed, the dataset constructors are MLflow plugins too: ``mlflow.data.from_image_folder`` and
``mlflow.data.from_coco`` exist without importing this package, and ``mlflow.data.get_source(...)`` resolves
the sources these datasets log.
"""

import importlib

__all__ = [
    "from_image_folder", "from_coco", "from_huggingface", "log_dataset", "check", "runs_using", "models_trained_on",
    "datasets_of", "load", "download", "trace", "LineageError", "LeakageError",
]
# Resolved on first use (PEP 562): importing a layer of the library (the data layer, the command line) must
# not pull MLflow in with the public API.
_HOMES = {**{name: "image_lineage.api" for name in __all__[:11]}, "LineageError": "image_lineage.core.errors",
          "LeakageError": "image_lineage.core.errors"}


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'image_lineage' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
