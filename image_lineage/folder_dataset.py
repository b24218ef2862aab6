"""Log one version of an image folder (``<data_dir>/<version>/<class>/<image>``) as an MLflow run.

What a run holds (the homework's deliverables, plus lineage):

* params ``dataset_version``, ``dataset_name``, ``num_classes``, ``class_names``;
* metrics ``total_images`` and ``class_<name>_count`` for every class of any version under data_dir;
* artifacts ``samples/<class>/<file>``, ``manifest.json``, ``diff.json``, ``class_counts.png``, and, when a
  class holds more than ``max_samples_per_class`` files, the whole version as one ``archive/<version>.tar``;
* the dataset input (content digest, folder + git commit source) and tags ``dataset.*``.

When a FINISHED run anywhere on the tracking server already holds the files of the same digest, the new
run is a light re-log: metrics, params, input and tags only, plus ``dataset.snapshot_run_id`` and
``dataset.snapshot_uri`` naming where the files are (:mod:`image_lineage.snapshot`; ``snapshot=copy``
uploads them anyway).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import DatasetInput, InputTag
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from image_lineage import manifest as mf
from image_lineage.archive import write_archive
from image_lineage.object_store import Mirror, is_object_uri, mirror_versions
from image_lineage.core import (
    TAG_DIFF, TAG_DIGEST, TAG_IGNORED, TAG_QUALITY_STATUS, TAG_REPORTS_DIGEST, TAG_SNAPSHOT_URI, DatasetError, LineageError,
    digest_prefix,
)
from image_lineage.plots import plot_class_counts
from image_lineage.profiles import image_profile, with_profile
from image_lineage.source_kinds.image_folder import manifest_images
from image_lineage.quality import (
    apply_gate, apply_recorded_gate, find_pairs, log_quality, recorded_quality, require_on_leakage,
)
from image_lineage.snapshot import find_holder, holder_tags, link_tags, mark_shared, require_snapshot_choice
from image_lineage.sources import FolderDatasetSource
from image_lineage.tracking import link_or_copy, log_values, resolve_experiment_id, schema_hints_silenced, start_run, upload_folder

LOGGER = logging.getLogger(__name__)


# The manifest table's columns never change. MLflow infers a pandas dataset's schema element by element
# (20 ms for 2,000 rows, on the unchanged re-log's critical path), so the schema is given instead.
MANIFEST_SCHEMA = Schema([ColSpec("string", "path"), ColSpec("string", "label"), ColSpec("long", "size"),
                          ColSpec("string", "sha256"), ColSpec("long", "width"), ColSpec("long", "height")])


@dataclass
class FolderVersionRequest:
    data_dir: str = "image_dataset"
    version: str = "v1"
    dataset_name: str = "cat_dog_dataset"
    # Logged as param dataset_version; None derives it from version (v1 -> 1.0.0). The MLproject names it
    # dataset_semver because `mlflow run` logs every entry-point parameter itself, and a run's param
    # cannot change afterwards: a parameter called dataset_version would pin the value to "auto".
    dataset_semver: str | None = None
    run_name: str | None = None  # None: image_<version>
    max_samples_per_class: int = 50
    on_bad_image: str = "fail"
    image_check: str = "structure"
    quality_check: str = "on"  # duplicates and near-duplicates in the version, and across its classes
    on_leakage: str = "warn"
    snapshot: str = "reuse"  # reuse: files of a digest already stored on the server are not uploaded again; copy
    experiment_name: str | None = None  # only used outside `mlflow run`


@dataclass
class LoggedVersion:
    run_id: str
    digest: str
    snapshot_run_id: str | None
    manifest: mf.Manifest
    diff: dict


def derive_dataset_version(version: str) -> str:
    """``v1`` -> ``1.0.0``, ``v2.1`` -> ``2.1.0``; anything else must be given explicitly."""
    match = re.fullmatch(r"[vV]?(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    if not match:
        raise DatasetError(
            f"cannot derive a dataset_version from version folder {version!r}: pass -P dataset_semver=<x.y.z>."
        )
    return ".".join(part or "0" for part in match.groups())


def log_folder_version(request: FolderVersionRequest) -> LoggedVersion:
    """Scan, diff and log one version folder; see the module docstring for what the run holds."""
    data_dir, remote = mirror_versions(request.data_dir, request.version) if is_object_uri(request.data_dir) else (
        request.data_dir, None)  # an s3:// prefix is read into a local mirror first: nothing is logged if that fails
    version_dir = mf.resolve_version_dir(data_dir, request.version)
    dataset_version = request.dataset_semver or derive_dataset_version(request.version)
    if request.max_samples_per_class < 0:
        raise DatasetError("max_samples_per_class must be 0 or more.")
    require_on_leakage(request.on_leakage)
    require_snapshot_choice(request.snapshot)
    # Requests to a tracking server take ~10-20 ms each on a small machine, so none waits on another
    # without need: the experiment is looked up while the folder is read, the holder search runs while the
    # run is created, and the dataset input is built and sent while params and metrics are written.
    with ThreadPoolExecutor(2) as pool:
        experiment = pool.submit(resolve_experiment_id, request.experiment_name)
        manifest, diff, all_classes = read_version(data_dir, version_dir, request)  # a bad folder stops here: no run
        version = VersionToLog(request, version_dir, dataset_version, remote, manifest, diff, all_classes)
        return log_version_run(version, experiment.result(), pool)


@dataclass
class VersionToLog:
    request: FolderVersionRequest
    version_dir: Path
    dataset_version: str
    remote: Mirror | None
    manifest: mf.Manifest
    diff: dict
    all_classes: list[str]


def read_version(data_dir: str | Path, version_dir: Path, request: FolderVersionRequest
                 ) -> tuple[mf.Manifest, dict, list[str]]:
    """(the version's manifest, its diff against the nearest earlier version, every class of every version)."""
    manifest = mf.scan_version(version_dir, request.on_bad_image, image_check=request.image_check,
                               perceptual=request.quality_check == "on")
    old_manifest, passed_over = mf.scan_previous_version(data_dir, request.version)
    diff = mf.diff_manifests(old_manifest, manifest)
    if passed_over:
        diff["skipped_versions"] = passed_over  # in diff.json: why the diff base is not the folder just before
    return manifest, diff, all_class_names(data_dir)


def log_version_run(version: VersionToLog, experiment_id: str, pool: ThreadPoolExecutor) -> LoggedVersion:
    """The version's run: files uploaded, or linked to the run that holds them; summary and dataset input."""
    request, manifest = version.request, version.manifest
    holder_search = pool.submit(find_holder, manifest.digest, experiment_id) if request.snapshot == "reuse" else None
    with start_run(run_name=request.run_name or f"image_{request.version}", experiment_id=experiment_id) as run:
        holder = holder_search.result() if holder_search else None
        snapshot = holder.info.run_id if holder else None
        # before the files: with on_leakage=fail the run stops here, its report logged
        quality_status, quality_metrics, quality_tags = (
            check_version(run, manifest, request, holder, snapshot) if request.quality_check == "on" else (None, {}, {}))
        reports = version_reports(manifest, version.diff, version.remote)
        reports_tag = reports_digest(reports)
        if holder:
            LOGGER.info("digest %s already stored by run %s: files not uploaded again", manifest.digest[:12], snapshot)
            pool.submit(mark_shared, holder)
            snapshot_tags = link_tags(holder)
            if holder.data.tags.get(TAG_REPORTS_DIGEST) != reports_tag:  # another folder or diff base
                upload_reports(reports)
        else:
            stored_at, archive_sha256 = log_version_files(manifest, reports, request, version.dataset_version)
            snapshot_tags = holder_tags(manifest.digest, run.info.run_id, stored_at, archive_sha256)
        params, metrics, tags = version_summary(manifest, version.all_classes, version.diff, request.dataset_name,
                                                version.dataset_version)
        tags[TAG_REPORTS_DIGEST] = reports_tag
        # one request, sent first: the server writes it while this thread builds the dataset input
        summary_logged = pool.submit(log_values, run, params, {**metrics, **quality_metrics},
                                     {**tags, **quality_tags, **snapshot_tags})
        source = dataset_source(version.version_dir, version.remote, snapshot_tags[TAG_SNAPSHOT_URI])
        log_dataset_input(run.info.run_id, manifest, request.dataset_name, source, quality_status)
        summary_logged.result()
    return LoggedVersion(run.info.run_id, manifest.digest, snapshot, manifest, version.diff)


def check_version(run, manifest: mf.Manifest, request: FolderVersionRequest, earlier,
                  snapshot: str | None) -> tuple[str, dict, dict]:
    """The leakage check of the version: (status, metrics, tags still to be logged with the run's summary).

    An earlier run of the same digest already holds its result (the same bytes give the same pairs): a
    re-log records it again instead of recomputing, in the summary's request unless the gate stops the run."""
    recorded = recorded_quality(earlier) if earlier else None
    if recorded:
        metrics, status = recorded
        try:
            apply_recorded_gate(status, request.on_leakage, f"run {snapshot}")
        except LineageError:
            log_values(run, metrics=metrics, tags={TAG_QUALITY_STATUS: status})  # the FAILED run says why
            raise
        return status, metrics, {TAG_QUALITY_STATUS: status}
    images = manifest_images(manifest, request.version)  # one split (the version), labels from the class folders
    quality = find_pairs(images, request.image_check)
    log_quality(quality, images, run, files=not snapshot)
    apply_gate(quality, request.on_leakage)
    return quality.status, {}, {}


def all_class_names(data_dir: str | Path) -> list[str]:
    """Every class folder of every version, so each run reports the same ``class_*_count`` metrics."""
    names: set[str] = set()
    for version in mf.list_versions(data_dir):
        names.update(mf.list_class_names(Path(data_dir) / version))
    return sorted(names)


def version_summary(manifest, all_classes, diff, dataset_name, dataset_version) -> tuple[dict, dict, dict]:
    """(params, metrics, tags) of a version run."""
    counts = manifest.class_counts()
    present = manifest.non_empty_classes()
    params = {
        "dataset_version": dataset_version,
        "dataset_name": dataset_name,
        "num_classes": str(len(present)),
        "class_names": json.dumps(present),
    }
    metrics = {"total_images": len(manifest.records)}
    metrics.update({f"class_{name}_count": counts.get(name, 0) for name in all_classes})
    tags = {
        TAG_DIGEST: manifest.digest,
        TAG_DIFF: mf.summarize_diff(diff),
        TAG_IGNORED: str(len(manifest.ignored)),
    }
    return params, metrics, tags


def dataset_source(version_dir: Path, remote: Mirror | None, snapshot_uri: str) -> FolderDatasetSource:
    """Where the version came from: the folder and its git commit, or the s3:// prefix and its objects'
    ETags (inline up to ``INLINE_OBJECTS``, else in the run's ``s3_objects.json``); and where the server
    stores its files."""
    if remote is None:
        return FolderDatasetSource.from_folder(version_dir, snapshot_uri)
    return FolderDatasetSource(remote.uri, snapshot_uri=snapshot_uri, objects=remote.source_objects())


def log_dataset_input(run_id: str, manifest: mf.Manifest, dataset_name: str, source: FolderDatasetSource,
                      quality_status: str | None = None) -> None:
    """The Datasets panel entry: the manifest table, our content digest, the folder + commit source.

    Sent with ``MlflowClient`` and an explicit run id, so it can run beside the other requests."""
    table = pd.DataFrame([vars(r) for r in manifest.records])
    with schema_hints_silenced():
        dataset = mlflow.data.from_pandas(
            table,
            source=source,
            name=dataset_name,
            targets="label",
            digest=digest_prefix(manifest.digest),
        )
        dataset.schema = MANIFEST_SCHEMA  # what MLflow would infer (a test checks), without its per-row walk
        records = manifest.records
        with_profile(dataset, image_profile((r.width for r in records), (r.height for r in records), (r.size for r in records),
                                            manifest.class_counts(), manifest.digest, quality_status=quality_status))
        entity = dataset._to_mlflow_entity()
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training"), InputTag("version", Path(manifest.version_dir).name)]
    mlflow.MlflowClient().log_inputs(run_id, datasets=[DatasetInput(entity, tags)])


def log_version_files(manifest: mf.Manifest, reports: dict[str, str], request: FolderVersionRequest,
                      dataset_version: str) -> tuple[str, str | None]:
    """Stage every file in one temp folder and upload it in one go; returns (the artifact path that holds
    every image: ``samples`` or ``archive/<version>.tar``, the archive's sha256 or None)."""
    stored_at, archive_sha256 = "samples", None
    with tempfile.TemporaryDirectory(prefix="image_lineage_") as staging:
        stage = Path(staging)
        stage_samples(manifest, stage / "samples", request.max_samples_per_class)
        if max(manifest.class_counts().values()) > request.max_samples_per_class:
            stored_at = f"archive/{request.version}.tar"
            archive_sha256 = stage_archive(manifest, stage / stored_at)
        (stage / "manifest.json").write_text(manifest.to_json())
        write_reports(reports, stage)
        plot_class_counts(
            manifest.class_counts(), stage / "class_counts.png",
            f"{request.dataset_name} {dataset_version} ({len(manifest.records)} images)",
        )
        upload_folder(stage)
    for label in manifest.non_empty_classes():  # the run page shows these as images, one per class
        mlflow.log_image(sample_grid(manifest, label, request.max_samples_per_class), key=f"samples_{label}", synchronous=True)
    return stored_at, archive_sha256


def version_reports(manifest: mf.Manifest, diff: dict, remote: Mirror | None = None) -> dict[str, str]:
    """What a run says about its folder beyond the content (the same images can sit in another folder,
    beside other versions): ``diff.json``, ``ignored_files.json`` when files were left out, and for an
    s3:// version ``s3_objects.json`` (each object's key, ETag, size, last-modified and version id)."""
    reports = {"diff.json": json.dumps(diff, indent=1)}
    if manifest.ignored:
        reports["ignored_files.json"] = json.dumps(manifest.ignored, indent=1)
    if remote is not None:
        reports["s3_objects.json"] = json.dumps(remote.to_dict(), indent=1)
    return reports


def reports_digest(reports: dict[str, str]) -> str:
    """Tagged on every version run: a run that reuses a snapshot uploads its reports only when they differ
    from the holder's (a re-log of the same folder sends no file)."""
    return hashlib.sha256(json.dumps(reports, sort_keys=True).encode()).hexdigest()[:16]


def write_reports(reports: dict[str, str], folder: Path) -> None:
    for name, text in reports.items():
        (folder / name).write_text(text)


def upload_reports(reports: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="image_lineage_") as staging:
        write_reports(reports, Path(staging))
        upload_folder(staging)


def sample_grid(manifest: mf.Manifest, label: str, limit: int, cell: int = 128, columns: int = 4):
    """Up to 16 (and ``limit``) of a class's images as one grid picture, each fitted into a ``cell`` square."""
    from PIL import Image

    first = itertools.islice((r for r in manifest.records if r.label == label), min(16, max(limit, 1)))
    paths = [Path(manifest.version_dir) / r.path for r in first]  # not a Path for each of 100,000 records
    rows = -(-len(paths) // columns)
    grid = Image.new("RGB", (cell * min(columns, len(paths)), cell * rows), "white")
    for position, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft("RGB", (cell, cell))
            thumbnail = image.convert("RGB")
            thumbnail.thumbnail((cell, cell))
        grid.paste(thumbnail, (cell * (position % columns), cell * (position // columns)))
    return grid


def stage_samples(manifest: mf.Manifest, target: Path, per_class: int) -> None:
    """Link (or copy) up to ``per_class`` images of each class under ``target/<class>/``."""
    taken: dict[str, int] = {}
    source_root = Path(manifest.version_dir)
    for record in manifest.records:  # sorted by path, so samples are the first files of each class
        if taken.get(record.label, 0) >= per_class:
            continue
        taken[record.label] = taken.get(record.label, 0) + 1
        destination = target / record.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(source_root / record.path, destination)


def stage_archive(manifest: mf.Manifest, path: Path) -> str:
    """The whole version in one uncompressed, deterministic tar (images are already compressed): one
    upload, the same bytes for the same files; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = manifest.version_dir  # plain strings: a Path per record costs ~10 us, a second at 100,000 images
    return write_archive(((record.path, os.path.join(root, record.path)) for record in manifest.records), path)
