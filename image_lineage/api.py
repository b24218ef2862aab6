"""The public API, re-exported by ``image_lineage`` (see its ``__all__``): lineage from your own training script.

No ``from __future__ import annotations`` here, on purpose: MLflow registers a dataset constructor only if
its return annotation is a ``Dataset`` subclass it can ``issubclass``, not a string (the entry points in
``pyproject.toml`` make ``mlflow.data.from_image_folder`` and ``mlflow.data.from_coco`` of these two).
"""

import os
from pathlib import Path
from typing import Optional, Union

from image_lineage.core.errors import LineageError
from image_lineage.data.arrow_digest import compute_arrow_digest
from image_lineage.data.kinds import LoadedSplit, LoadOptions, SourceRef, dataset_name_of, label_counts
from image_lineage.flows import dataset_logging
from image_lineage.flows import trace as tracing
from image_lineage.flows.ingest import read_source
from image_lineage.quality.pairs import DEFAULT_THRESHOLD, QualityReport, find_pairs
from image_lineage.tracking import datasets as forms
from image_lineage.tracking import lineage
from image_lineage.tracking.downloads import download_version
from image_lineage.tracking.dataset_sources import FolderDatasetSource, mlflow_source

PathLike = Union[str, os.PathLike]


def from_image_folder(path: PathLike, split: Optional[str] = None, name: Optional[str] = None,
                      digest: Optional[str] = None, image_check: str = "structure",
                      on_bad_image: str = "fail", engine: str = "local") -> forms.ImageFolderDataset:
    """An image folder (``<path>/<class>/<image>``, or ``train*/``, ``val*/``, ``test*/`` splits of class
    folders, or an ``s3://`` prefix of either) as an MLflow dataset whose digest is the content digest
    ``log_folder_dataset`` and ``log_hf_dataset`` log for the same files; each file is read once (unchanged
    files not at all: the record cache). ``engine="spark"`` reads them in a Spark job (the active session, on
    Databricks), with the same result.

    Example::

        import mlflow, image_lineage
        pets = image_lineage.from_image_folder("data/pets/v2")   # or mlflow.data.from_image_folder(...)
        with mlflow.start_run():
            mlflow.log_input(pets, context="training")
        print(pets.digest, pets.profile["class_counts"])
    """
    source = os.fspath(path)
    ingestion = read_source(source, split or "all", LoadOptions(image_check=image_check, on_bad_image=on_bad_image,
                                                                engine=engine))
    if any(s.manifest is None for s in ingestion.splits):
        raise LineageError(f"{source} is a {ingestion.kind} source, not a folder of class folders: use "
                           f"image_lineage.from_coco for COCO folders, from_huggingface for a datasets.Dataset.")
    remote = ingestion.splits[0].remote
    origin = (FolderDatasetSource(remote.uri, objects=remote.source_objects(), digest=ingestion.digest) if remote
              else FolderDatasetSource.from_folder(source, digest=ingestion.digest))
    return forms.ImageFolderDataset(ingestion.splits, ingestion.digest, origin, name=name or dataset_name_of(source),
                                    digest=digest)


def from_coco(path: PathLike, split: str = "train", name: Optional[str] = None, digest: Optional[str] = None,
              image_check: str = "structure", on_bad_image: str = "fail", engine: str = "local") -> forms.CocoDataset:
    """One split of a COCO folder (``annotations/instances_<name>.json`` + ``<name>/``) as an MLflow dataset
    whose digest covers its images and annotations, as ``log_hf_dataset`` and ``coco_finetune`` log it.

    Example::

        val = image_lineage.from_coco("coco/sample", split="validation")
        mlflow.log_input(val, context="validation")
    """
    source = os.fspath(path)
    (loaded,) = read_source(source, split, LoadOptions(image_check=image_check, on_bad_image=on_bad_image,
                                                       engine=engine)).splits
    if loaded.index is None:
        raise LineageError(f"{source} is not a COCO folder (annotations/instances_<name>.json + <name>/): use "
                           f"image_lineage.from_image_folder for class folders.")
    origin = mlflow_source(loaded.source)
    origin.digest = loaded.digest  # load() checks the split still holds it
    return forms.CocoDataset(loaded, origin, name=name or f"{dataset_name_of(source)}_{loaded.split}", digest=digest)


def from_huggingface(dataset, path: Optional[str] = None, targets: Optional[str] = None, name: Optional[str] = None,
                     digest: Optional[str] = None, image_check: str = "structure", **source) -> forms.ContentDigestDataset:
    """A ``datasets.Dataset`` as ``mlflow.data.from_huggingface`` makes it (same arguments and source), with
    the content digest of its rows in place of MLflow's, which ignores image bytes: image cells are hashed
    by their bytes, embedded or in the files they name.

    Example::

        ds = datasets.load_dataset("imagefolder", data_dir="data/pets/v2", split="train")
        pets = image_lineage.from_huggingface(ds, path="imagefolder", data_dir="data/pets/v2")
        mlflow.log_input(pets, context="training")
    """
    content = compute_arrow_digest(dataset, image_check)
    targets = targets or ("label" if "label" in dataset.column_names else None)
    counts = label_counts(dataset, targets) if targets else {}
    profile = {"num_rows": dataset.num_rows, "class_counts": counts or None, "digest": content}
    logged = forms.from_huggingface(dataset, path=path, targets=targets, name=name,
                                    digest=digest or content[:32], profile=profile, **source)
    split = LoadedSplit(dataset.split or "train", content, counts, "rows", targets, SourceRef("hugging_face", {}),
                        lambda: dataset, profile=profile)
    logged.splits, logged.content_digest = [split], content
    return logged


def log_dataset(dataset, context: str = "training", quality_check: bool = True, on_leakage: str = "warn",
                snapshot: str = "reuse", max_samples_per_class: int = 50) -> Optional[str]:
    """Log a dataset made here into the active run the way the entry points log theirs: the leakage check
    (``quality/*``; ``on_leakage="fail"`` raises), its files stored once per tracking server or linked
    (``snapshot="copy"`` uploads anyway), class counts, digest tags and the dataset input. Returns the
    leakage status (``clean``, ``duplicates``, ``leakage``; None when not checked).

    Example::

        with mlflow.start_run():
            image_lineage.log_dataset(image_lineage.from_image_folder("data/pets/v2"), context="training")
    """
    return dataset_logging.log_dataset(dataset, context, quality_check, on_leakage, snapshot,
                                       max_samples_per_class).status


def check(path_or_dataset, threshold: int = DEFAULT_THRESHOLD, image_check: str = "structure",
          engine: str = "local") -> QualityReport:
    """The leakage check, nothing logged: exact and near-duplicate image pairs, across splits (leakage) and
    labels (conflicts). Takes a folder or COCO folder (or ``s3://`` prefix), or a dataset made here; returns
    the report (``.pairs`` a DataFrame, one row per pair; ``.status``; ``.metrics``).

    Example::

        report = image_lineage.check("data/pets")      # train/ and val/ inside
        print(report.status, report.pairs[report.pairs.leakage])
    """
    splits = getattr(path_or_dataset, "splits", None)
    if splits is None:
        splits = read_source(os.fspath(path_or_dataset), options=LoadOptions(image_check=image_check,
                                                                             perceptual=True, engine=engine)).splits
    if any(s.images is None for s in splits):
        raise LineageError("the leakage check reads image files: this dataset's images are not files.")
    return find_pairs([image for s in splits for image in s.images], image_check, threshold, engine)


def runs_using(digest: str, experiment_names: Optional[list] = None) -> list:
    """The runs that logged, checked or trained on a dataset digest, oldest first, in every experiment you can
    read: any form the project shows (the full sha256, 32 or 12 hex digits; one split's, or all splits combined).

    Example::

        for run in image_lineage.runs_using("bb4767a21406"):
            print(run.info.run_name, run.info.experiment_id)
    """
    return lineage.find_runs_by_digest(digest, experiment_names)


def models_trained_on(digest: str):
    """The registered model versions trained on a dataset digest (any form, as :func:`runs_using`), as a
    table: Model, Version, Run ID, Link (``model``: MLflow 3's model-to-dataset link; else the run's input).

    Example::

        print(image_lineage.models_trained_on(image_lineage.from_image_folder("data/pets/v2").digest))
    """
    return lineage.versions_trained_on(digest)


def datasets_of(model_name: str, version):
    """The datasets a registered model version was trained and evaluated on (name, digest, context, source).

    Example::

        print(image_lineage.datasets_of("pets-classifier", 3))
    """
    return lineage.datasets_of_version(model_name, str(version))


def load(logged, split: Optional[str] = None):
    """The data a run logged, back as a ``datasets.Dataset`` (a ``DatasetDict`` for several splits); refused,
    naming both digests, when it changed since. ``logged``: a run id, a run's dataset input, or its dataset.

    Example::

        run = mlflow.get_run(run_id)
        data = image_lineage.load(run.inputs.dataset_inputs[0])
    """
    return lineage.load_logged_dataset(logged, split)


def download(run_id: str, destination: PathLike, croissant: bool = False, files: bool = True) -> Path:
    """Rebuild the image files of the dataset version a run logged in ``destination`` (a new or empty folder),
    byte for byte: from the content store's packs (each file checked against its sha256; a mismatch is
    refused naming the file), or the run's samples when they are all its files. Returns the folder. With
    ``croissant``, the version's Croissant metadata (``croissant.json``) and manifest are written beside the
    class folders, where ``mlcroissant.Dataset(f"{folder}/croissant.json")`` iterates its records; with
    ``files=False`` only those (a Hugging Face form of a hub dataset stores no files).

    Example::

        folder = image_lineage.download(run_id, "restored/v2")
        logged = mlflow.get_run(run_id).inputs.dataset_inputs[0].dataset
        assert image_lineage.from_image_folder(folder).digest == logged.digest
    """
    return download_version(run_id, destination, croissant, files)


def trace(what: PathLike, index: Optional[PathLike] = None, refresh: bool = True):
    """Every dataset version that holds an image's bytes, every run that logged, checked or trained on those
    versions, and every registered model version those runs made, across all the experiments you can read.
    ``what``: an image file, a folder (each of its images: which were ever logged, and where), a sha256 or its
    first 8+ hex digits, or a path inside a logged version (``cat/cat_01.jpg``). Answered from an index of the
    runs' manifests (``index``: its file; by default one per tracking server in the cache folder), brought up to
    date first unless ``refresh`` is False. Returns tables ``images``, ``runs``, ``models`` (and ``files``).

    Example::

        found = image_lineage.trace("withdrawn/photo_0412.jpg")
        print(found.models)            # Model, Version, Aliases, Run ID: what to retrain
    """
    return tracing.trace(what, index, refresh)
