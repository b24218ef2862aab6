"""The content store from the command line: a version's files back (``download``), what deleting runs would
orphan (``orphans``), and removing packs no active run lists (``gc``, a dry run unless ``--delete``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mlflow
import pandas as pd

from image_lineage.core.errors import LineageError
from image_lineage.tracking.store_gc import PackUse, collect_garbage, deletion_report
from image_lineage.tracking.downloads import download_version

LOGGER = logging.getLogger(__name__)


@dataclass
class DownloadRequest:
    run_id: str
    destination: str
    croissant: bool = False  # also croissant.json and the manifest, beside the class folders
    files: bool = True  # False: croissant.json and the manifests it names only


def download_dataset(request: DownloadRequest):
    """Rebuild the files of the version a run logged in ``destination``, every file checked by sha256."""
    folder = download_version(request.run_id, request.destination, request.croissant, request.files)
    count = sum(1 for path in folder.rglob("*") if path.is_file())
    print(f"{count} files of run {request.run_id} in {folder}, each checked against its sha256" if request.files
          else f"croissant.json of run {request.run_id} and {count - 1} stored file(s) it names in {folder}")
    return folder


@dataclass
class OrphansRequest:
    run_ids: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)  # names or ids


def list_orphans(request: OrphansRequest) -> dict[str, list[PackUse]]:
    """Print, for deleting these runs and experiments, the packs that would be orphaned and those kept."""
    if not request.run_ids and not request.experiments:
        raise LineageError("name the runs (--run-id) or experiments (--experiment) whose deletion to look at.")
    report = deletion_report(request.run_ids, [experiment_id(name) for name in request.experiments])
    for verdict, meaning in (("orphaned", "only these runs list them: gc would remove them once they are deleted"),
                             ("kept", "other active runs still list them")):
        uses = report[verdict]
        print(f"{verdict}: {len(uses)} packs, {sum(u.size for u in uses) / 1e6:.1f} MB ({meaning})")
        if uses:
            print(packs_table(uses).to_string(index=False))
    return report


def experiment_id(name_or_id: str) -> str:
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name_or_id)
    if experiment is None and name_or_id.isdigit():
        experiment = client.get_experiment(name_or_id)
    if experiment is None:
        raise LineageError(f"no experiment named {name_or_id!r} on this tracking server.")
    return experiment.experiment_id


@dataclass
class GcRequest:
    delete: bool = False
    min_age_hours: float = 1.0


def collect_store_garbage(request: GcRequest) -> list[PackUse]:
    """List (or with ``delete``, remove) the packs no active run lists."""
    garbage = collect_garbage(dry_run=not request.delete, min_age_hours=request.min_age_hours)
    verb = "removed" if request.delete else "would remove (dry run; --delete removes them)"
    print(f"{verb}: {len(garbage)} packs, {sum(u.size for u in garbage) / 1e6:.1f} MB")
    if garbage:
        print(packs_table(garbage).to_string(index=False))
    return garbage


def packs_table(uses: list[PackUse]) -> pd.DataFrame:
    return pd.DataFrame([{"pack": u.sha256[:16], "store run": u.run_id, "files": u.files, "MB": round(u.size / 1e6, 2),
                          "still listed by": ", ".join(u.used_by) or "-"} for u in uses])
