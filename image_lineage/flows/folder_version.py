"""Log one version of an image folder (``<data_dir>/<version>/<class>/<image>``) as an MLflow run.

What a run holds (the homework's deliverables, plus lineage):

* params ``dataset_version``, ``dataset_name``, ``num_classes``, ``class_names``;
* metrics ``total_images`` and ``class_<name>_count`` for every class of any version under data_dir;
* artifacts ``samples/<class>/<file>``, ``manifest.json``, ``diff.json``, ``class_counts.png``,
  ``croissant.json`` (the version's Croissant metadata: :mod:`image_lineage.data.croissant`), and, when a
  class holds more than ``max_samples_per_class`` files, ``store.json.gz``: where each image is in the content
  store (:mod:`image_lineage.tracking.content_store`), which received only the files no earlier version stored;
* the dataset input (content digest, folder + git commit source) and tags ``dataset.*``;
* for a folder DVC tracks (a ``.dvc`` file beside it, or a ``dvc.lock`` output), tags ``dvc.*``: DVC's own id of
  the folder as it is now, the id DVC recorded, and a warning when they differ (:func:`dvc_tags`).

The stages are the ingestion path's (:mod:`image_lineage.flows.ingest`): the version is read whole by its
source kind (:func:`image_lineage.data.versions.read_version`), checked, stored or linked, logged. When a
FINISHED run of the same experiment already holds the files of the same digest, the new run is a light
re-log: metrics, params, input and tags only, plus ``dataset.snapshot_run_id`` and ``dataset.snapshot_uri``
naming where the files are (``snapshot=copy`` uploads them anyway). When the holder is in another experiment
(the demo's runs, another course's homework), the run keeps its own evidence (samples, manifest, class chart,
grids) and links only the store map; a holder whose files this client cannot download is never linked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from image_lineage.core.errors import LineageError
from image_lineage.core.names import (
    TAG_DIFF, TAG_DIGEST, TAG_DVC_FILE, TAG_DVC_MATCHES, TAG_DVC_MD5, TAG_DVC_RECORDED, TAG_DVC_WARNING, TAG_IGNORED,
    TAG_REPORTS_DIGEST, TAG_SNAPSHOT_URI,
)
from image_lineage.data.cache import RecordCache
from image_lineage.data.croissant import CROISSANT_NAME, metadata_text, read_card, version_metadata
from image_lineage.data.diff import summarize_diff
from image_lineage.data.dvc import DvcStatus, folder_status
from image_lineage.data.folders import Manifest
from image_lineage.data.object_store import is_object_uri
from image_lineage.data.kinds import LoadOptions
from image_lineage.data.versions import VersionRead, derive_dataset_version, read_version
from image_lineage.flows.ingest import CheckOutcome, check_in_run, log_split_inputs, split_inputs, split_reads
from image_lineage.flows.staging import log_sample_grids, needs_store, stage_evidence, stage_folder_files
from image_lineage.quality.gate import require_on_leakage
from image_lineage.tracking.artifacts import write_files
from image_lineage.tracking.content_store import packs_tags
from image_lineage.tracking.dataset_sources import folder_source
from image_lineage.tracking.runs import log_values, resolve_experiment_id, start_run
from image_lineage.tracking.snapshots import find_holder, holder_tags, require_snapshot_choice, store_or_link

LOGGER = logging.getLogger(__name__)


@dataclass
class FolderVersionRequest:
    data_dir: str = "image_dataset"
    version: str = "v1"
    dataset_name: str = "cat_dog_dataset"
    # Logged as param dataset_version; None derives it from version (v1 -> 1.0.0). The MLproject names it
    # dataset_semver because `mlflow run` logs every entry-point parameter itself, and a run's param
    # cannot change afterwards: a parameter called dataset_version would pin the value to "auto".
    dataset_semver: str | None = None
    run_name: str | None = None  # None: image_<version> (<dataset_name>_<version> for another dataset name)
    max_samples_per_class: int = 50
    on_bad_image: str = "fail"
    image_check: str = "structure"
    engine: str = "local"  # where the image pass runs: local (this machine) or spark (a Spark job)
    quality_check: str = "on"  # duplicates and near-duplicates in the version, and across its classes
    on_leakage: str = "warn"
    snapshot: str = "reuse"  # reuse: files of a digest already stored on the server are not uploaded again; copy
    experiment_name: str | None = None  # only used outside `mlflow run`


@dataclass
class LoggedVersion:
    run_id: str
    digest: str
    snapshot_run_id: str | None
    manifest: Manifest
    diff: dict


def log_folder_version(request: FolderVersionRequest) -> LoggedVersion:
    """Read, diff and log one version folder; see the module docstring for what the run holds."""
    dataset_version = request.dataset_semver or derive_dataset_version(request.version)
    if request.max_samples_per_class < 0:
        raise LineageError("max_samples_per_class must be 0 or more.")
    require_on_leakage(request.on_leakage)
    require_snapshot_choice(request.snapshot)
    options = LoadOptions(image_check=request.image_check, on_bad_image=request.on_bad_image,
                          perceptual=request.quality_check == "on", engine=request.engine)
    # Requests to a tracking server take ~10-20 ms each on a small machine, so none waits on another
    # without need: the experiment is looked up while the folder is read, the holder search runs while the
    # run is created, and the dataset input is built and sent while params and metrics are written.
    with ThreadPoolExecutor(2) as pool:
        experiment = pool.submit(resolve_experiment_id, request.experiment_name)
        read = read_version(request.data_dir, request.version, options)  # a bad folder stops here: no run
        card = read_card(read.loaded.manifest.version_dir)  # and so does a bad croissant.yaml
        dvc = dvc_status(read.loaded.manifest)
        return log_version_run(request, read, dataset_version, experiment.result(), pool, card, dvc_tags(dvc))


def log_version_run(request: FolderVersionRequest, read: VersionRead, dataset_version: str, experiment_id: str,
                    pool: ThreadPoolExecutor, card: dict, extra_tags: dict) -> LoggedVersion:
    """The version's run: checked, files stored or linked, summary and dataset input."""
    loaded, manifest = read.loaded, read.loaded.manifest
    holder_search = pool.submit(find_holder, loaded.digest, experiment_id) if request.snapshot == "reuse" else None
    with start_run(run_name=request.run_name or default_run_name(request), experiment_id=experiment_id,
                   job="log_folder_dataset", reads=split_reads([loaded])) as run:
        found = holder_search.result() if holder_search else None
        # a holder in another experiment lends only its store map: the run's evidence is its own, and when the
        # samples are all the files, the run holds them itself
        elsewhere = found is not None and found.info.experiment_id != experiment_id
        holder = None if elsewhere and not needs_store(manifest, request.max_samples_per_class) else found
        # before the files: with on_leakage=fail the run stops here, its report logged; the same digest
        # checked before gives the same pairs (its report stays with that run)
        check = (check_in_run(run, lambda: loaded.images, request.image_check, request.on_leakage, earlier=found,
                              files=found is None, engine=request.engine) if request.quality_check == "on" else CheckOutcome(None))
        reports = version_reports(manifest, read.diff, loaded.remote)
        reports[CROISSANT_NAME] = croissant_text(manifest, f"{request.dataset_name}_{request.version}", dataset_version,
                                                 card)
        reports_tag = reports_digest(reports)
        own_reports_differ = holder is None or holder.data.tags.get(TAG_REPORTS_DIGEST) != reports_tag
        title = f"{request.dataset_name} {dataset_version}"

        def stage_own(folder):
            if own_reports_differ:
                write_files(reports, folder)
            if elsewhere and holder is not None:  # the evidence is the run's own; only the store map is linked
                stage_evidence(manifest, folder, request.max_samples_per_class, title)

        snapshot_tags = store_or_link(
            loaded.digest, holder,
            stage_data=lambda folder: stored_files_tags(run.info.run_id, *stage_folder_files(
                manifest, folder, request.max_samples_per_class, title)),
            stage_own=stage_own)
        if holder is None or elsewhere:
            log_sample_grids(manifest, request.max_samples_per_class)
        params, metrics, tags = version_summary(manifest, read.all_classes, read.diff, request.dataset_name, dataset_version)
        tags[TAG_REPORTS_DIGEST] = reports_tag
        # one request, sent first: the server writes it while this thread builds the dataset input
        summary_logged = pool.submit(log_values, run, params, {**metrics, **check.metrics},
                                     {**tags, **check.tags, **snapshot_tags, **extra_tags})
        source = folder_source(manifest.version_dir, loaded.remote, snapshot_tags[TAG_SNAPSHOT_URI])
        log_split_inputs(run.info.run_id, split_inputs([loaded], request.dataset_name, "manifest", check.status,
                                                       sources={loaded.split: source}, tag="version"))
        summary_logged.result()
    return LoggedVersion(run.info.run_id, loaded.digest, holder.info.run_id if holder else None, manifest, read.diff)


def dvc_status(manifest: Manifest) -> DvcStatus | None:
    """DVC's id of the version folder when DVC tracks it (:mod:`image_lineage.data.dvc`), from the md5s of the
    bytes the image pass read (cached by sha256); None for a folder DVC does not track (a few stats) or a bucket."""
    if is_object_uri(manifest.version_dir):
        return None
    return folder_status(manifest.version_dir, lambda: {r.path: r.sha256 for r in manifest.records},
                         RecordCache.default())


def dvc_tags(status: DvcStatus | None) -> dict[str, str]:
    """The run's ``dvc.*`` tags. A folder that no longer matches what DVC recorded is logged with its id now and a
    warning, never under the recorded id."""
    if status is None:
        return {}
    tracked_by = status.recorded.tracked_by
    shown = os.path.relpath(tracked_by) if tracked_by.is_relative_to(Path.cwd()) else str(tracked_by)
    tags = {TAG_DVC_RECORDED: status.recorded.md5, TAG_DVC_FILE: shown, TAG_DVC_MATCHES: status.matches}
    if status.md5:
        tags[TAG_DVC_MD5] = status.md5
    if status.matches != "true":
        tags[TAG_DVC_WARNING] = dvc_warning(status, shown)
        LOGGER.warning("DVC: %s", tags[TAG_DVC_WARNING])
    return tags


def dvc_warning(status: DvcStatus, shown: str) -> str:
    if status.md5 is None:
        return f"the folder's DVC id cannot be told: {status.why}"
    record = "`dvc add` the folder" if shown.endswith(".dvc") else "`dvc commit` (or `dvc repro`)"
    return (f"the folder no longer matches {shown} (recorded {status.recorded.md5}, now {status.md5}): {record} to "
            f"record this version, or `dvc checkout` to get the recorded one back")


def stored_files_tags(run_id: str, stored_at: str, packs: set[str]) -> dict[str, str]:
    """The holder tags of a version run: where every image is (its samples, or its store map), its packs."""
    return {**holder_tags(run_id, stored_at), **packs_tags(packs)}


def default_run_name(request: FolderVersionRequest) -> str:
    """``image_<version>`` for the homework's dataset (the name its assignment asks for), else ``<name>_<version>``."""
    default = FolderVersionRequest.dataset_name
    return f"image_{request.version}" if request.dataset_name == default else f"{request.dataset_name}_{request.version}"


def version_summary(manifest: Manifest, all_classes, diff, dataset_name, dataset_version) -> tuple[dict, dict, dict]:
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
    metrics.update({f"class_{name}_count": counts.get(name, 0) for name in sorted({*all_classes, *counts})})
    tags = {TAG_DIGEST: manifest.digest, TAG_DIFF: summarize_diff(diff), TAG_IGNORED: str(len(manifest.ignored))}
    return params, metrics, tags


def version_reports(manifest: Manifest, diff: dict, remote=None) -> dict[str, str]:
    """What a run says about its folder beyond the content (the same images can sit in another folder,
    beside other versions): ``diff.json``, ``ignored_files.json`` when files were left out, and for an
    s3:// version ``s3_objects.json`` (each object's key, ETag, size, last-modified and version id)."""
    reports = {"diff.json": json.dumps(diff, indent=1)}
    if manifest.ignored:
        reports["ignored_files.json"] = json.dumps(manifest.ignored, indent=1)
    if remote is not None:
        reports["s3_objects.json"] = json.dumps(remote.to_dict(), indent=1)
    return reports


def croissant_text(manifest: Manifest, name: str, semver: str, card: dict) -> str:
    """``croissant.json`` (:mod:`image_lineage.data.croissant`): the version's Croissant metadata."""
    location = manifest.version_dir
    url = location if is_object_uri(location) else Path(location).resolve().as_uri()
    return metadata_text(version_metadata(manifest, name, semver, url, card))


def reports_digest(reports: dict[str, str]) -> str:
    """Tagged on every version run: a run that reuses a snapshot uploads its reports only when they differ
    from the holder's (a re-log of the same folder sends no file)."""
    return hashlib.sha256(json.dumps(reports, sort_keys=True).encode()).hexdigest()[:16]
