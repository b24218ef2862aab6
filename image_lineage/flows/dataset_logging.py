"""A dataset made in the user's own script, logged into their active run the way the entry points log
theirs (``image_lineage.log_dataset``): the leakage check, the data's files stored once per tracking server
or linked, class counts and digest tags, and the dataset input itself, with its content digest.

Keys are the dataset's: metrics ``<name>/<split>/<rows|instances>_<class>``, artifacts under
``datasets/<name>/``, so a run can log a training and an evaluation dataset side by side. No params: a
user's own run already has its params, and MLflow refuses to change one.
"""

from __future__ import annotations

import logging

import mlflow

from image_lineage.core.errors import LineageError
from image_lineage.core.names import require_choice, SNAPSHOT_CHOICES
from image_lineage.data.kinds import LoadedSplit
from image_lineage.flows.hf_log import metric_key
from image_lineage.flows.ingest import CheckOutcome, check_in_run, digest_tags
from image_lineage.flows.staging import log_sample_grids, stage_coco_files, stage_folder_files
from image_lineage.quality.gate import require_on_leakage
from image_lineage.tracking.content_store import packs_tags
from image_lineage.tracking.datasets import log_inputs
from image_lineage.tracking.runs import log_values
from image_lineage.tracking.snapshots import find_holder, holder_tags, store_or_link

LOGGER = logging.getLogger(__name__)

COCO_FILES_MAX = 200  # COCO images per split uploaded as files; more go into the content store


def log_dataset(dataset, context: str = "training", quality_check: bool = True, on_leakage: str = "warn",
                snapshot: str = "reuse", max_samples_per_class: int = 50) -> CheckOutcome:
    """Log ``dataset`` (made by ``from_image_folder``, ``from_coco`` or ``from_huggingface``) into the active
    run; returns what the leakage check found (``status`` None when it did not run)."""
    run = mlflow.active_run()
    if run is None:
        raise LineageError("log_dataset logs into the active run: call it inside `with mlflow.start_run():`.")
    require_on_leakage(on_leakage)
    require_choice("snapshot", snapshot, SNAPSHOT_CHOICES)
    splits = getattr(dataset, "splits", None)
    if splits is None:
        raise LineageError(f"log_dataset takes a dataset made by image_lineage.from_image_folder, from_coco or "
                           f"from_huggingface, not a {type(dataset).__name__}; log others with mlflow.log_input.")
    files = all(s.list_images is not None for s in splits)  # the images are files: the check can read them
    images = lambda: [image for s in splits for image in s.images]  # noqa: E731  (listed only when checked)
    holder = find_holder(dataset.content_digest, run.info.experiment_id) if snapshot == "reuse" else None
    check = CheckOutcome(None)
    if quality_check and files:
        check = check_in_run(run, images, "structure", on_leakage, earlier=holder, files=holder is None)
    snapshot_tags = store_or_link(dataset.content_digest, holder,
                                  stage_data=(lambda folder: stage_dataset(splits, dataset.name, folder, max_samples_per_class,
                                                                           run.info.run_id)) if files else None)
    if holder is None and files and splits[0].manifest is not None:
        for loaded in splits:
            log_sample_grids(loaded.manifest, max_samples_per_class)
    log_values(run, metrics={**count_metrics(dataset.name, splits), **check.metrics},
               tags={**digest_tags(splits), **snapshot_tags, **check.tags})
    log_inputs(run.info.run_id, [(dataset, context, {})])
    return check


def stage_dataset(splits: list[LoadedSplit], name: str, folder, max_samples: int, run_id: str) -> dict[str, str]:
    """The data's files under ``datasets/<name>/`` (a folder per split when there are several); the holder tags."""
    root = folder / "datasets" / name
    if splits[0].index is not None:
        return {**holder_tags(run_id, f"datasets/{name}"), **packs_tags(stage_coco_files(splits, root, COCO_FILES_MAX))}
    packs = set()
    for loaded in splits:
        stage = root / loaded.split if len(splits) > 1 else root
        packs |= stage_folder_files(loaded.manifest, stage, max_samples, f"{name} {loaded.split}")[1]
    return {**holder_tags(run_id, f"datasets/{name}"), **packs_tags(packs)}


def count_metrics(name: str, splits: list[LoadedSplit]) -> dict[str, int]:
    metrics = {}
    for s in splits:
        metrics.update({f"{name}/{metric_key(s.split, s.count_kind, cls)}": count for cls, count in s.class_counts.items()})
    return metrics
