"""MLflow's plugin entry points (``pyproject.toml``): ``mlflow.data.from_image_folder`` and ``mlflow.data.from_coco``.

MLflow loads plugins while ``mlflow.data`` initializes, which can be in the middle of importing a module of
ours. So these constructors import the library when called, not when loaded, and declare MLflow's
``Dataset`` as their return type (what MLflow checks; they return its subclasses ``ImageFolderDataset`` and
``CocoDataset``). The arguments and docs are those of :mod:`image_lineage.api`.
"""

from mlflow.data.dataset import Dataset


def from_image_folder(path, split=None, name=None, digest=None, image_check="structure", on_bad_image="fail") -> Dataset:
    """:func:`image_lineage.from_image_folder`: an image folder with its content digest."""
    from image_lineage.api import from_image_folder as build

    return build(path, split=split, name=name, digest=digest, image_check=image_check, on_bad_image=on_bad_image)


def from_coco(path, split="train", name=None, digest=None, image_check="structure", on_bad_image="fail") -> Dataset:
    """:func:`image_lineage.from_coco`: one COCO split with the content digest of its images and annotations."""
    from image_lineage.api import from_coco as build

    return build(path, split=split, name=name, digest=digest, image_check=image_check, on_bad_image=on_bad_image)
