"""What deleting runs would orphan in the content store, and its garbage collection.

A pack is needed while an active run lists it (tag ``dataset.store_packs``: the run that holds a version's
map, and every run that links to it). :func:`deletion_report` splits the packs of the runs to delete into
those only they list (orphaned) and those other runs still list (kept); :func:`collect_garbage` removes the
packs no active run lists, a dry run unless asked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable

import mlflow
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_STORE_PACKS
from image_lineage.tracking import _compat
from image_lineage.tracking.content_store import PACK_ID_LEN, ContentStore, search_all, tagged_packs
from image_lineage.tracking.snapshots import EXPERIMENTS_PER_SEARCH, all_experiments

LOGGER = logging.getLogger(__name__)


def pack_references(skip_runs: set[str] = frozenset(), skip_experiments: set[str] = frozenset()) -> dict[str, set[str]]:
    """Pack id (16 hex) -> the active runs whose tags list it, over every active experiment but the store's."""
    client = mlflow.MlflowClient()
    store_name = config.store_experiment()
    experiments = [e.experiment_id for e in all_experiments()
                   if e.name != store_name and e.experiment_id not in skip_experiments]
    references: dict[str, set[str]] = {}
    for start in range(0, len(experiments), EXPERIMENTS_PER_SEARCH):
        listing = f"tags.`{TAG_STORE_PACKS}` LIKE '%'"
        for run in search_all(client, experiments[start:start + EXPERIMENTS_PER_SEARCH], listing):
            if run.info.run_id in skip_runs:
                continue
            for pack in tagged_packs(run.data.tags):
                references.setdefault(pack, set()).add(run.info.run_id)
    return references


@dataclass(frozen=True)
class PackUse:
    sha256: str
    run_id: str
    size: int
    files: int
    used_by: tuple[str, ...]  # active runs that list it (beyond those being deleted)


def deletion_report(run_ids: Iterable[str] = (), experiment_ids: Iterable[str] = ()) -> dict[str, list[PackUse]]:
    """What deleting these runs and experiments would do to the store: ``orphaned`` packs (only they list
    them: a garbage collection would remove them) and ``kept`` packs (other active runs still list them)."""
    client = mlflow.MlflowClient()
    run_ids, experiment_ids = set(run_ids), set(experiment_ids)
    listed = [run for experiment_id in experiment_ids
              for run in search_all(client, [experiment_id], f"tags.`{TAG_STORE_PACKS}` LIKE '%'")]
    for run_id in run_ids:
        try:
            listed.append(client.get_run(run_id))
        except MlflowException as exc:
            raise LineageError(f"run {run_id} cannot be read ({exc.message}): check the run id.") from exc
    run_ids |= {run.info.run_id for run in listed}
    targets = {pack for run in listed for pack in tagged_packs(run.data.tags)}
    others = pack_references(skip_runs=run_ids, skip_experiments=experiment_ids)
    store = ContentStore.open(client)
    report = {"orphaned": [], "kept": []}
    for sha, pack in sorted(store.packs.items()):
        if sha[:PACK_ID_LEN] in targets:
            users = tuple(sorted(others.get(sha[:PACK_ID_LEN], ())))
            report["kept" if users else "orphaned"].append(
                PackUse(sha, pack.run_id, pack.index.size, len(pack.index.entries), users))
    return report


def collect_garbage(dry_run: bool = True, min_age_hours: float = 1.0) -> list[PackUse]:
    """The packs no active run lists, older than ``min_age_hours`` (a version being logged right now has
    uploaded its packs but not yet tagged them); removed (their store runs deleted and their artifacts
    erased) unless ``dry_run``. Returns them."""
    client = mlflow.MlflowClient()
    store = ContentStore.open(client)
    references = pack_references()
    cutoff = (time.time() - min_age_hours * 3600) * 1000
    garbage = []
    for sha, pack in sorted(store.packs.items()):
        if sha[:PACK_ID_LEN] in references:
            continue
        run = client.get_run(pack.run_id)
        if (run.info.end_time or run.info.start_time) > cutoff:
            continue
        garbage.append(PackUse(sha, pack.run_id, pack.index.size, len(pack.index.entries), ()))
        if not dry_run:
            delete_pack(client, run)
    return garbage


def delete_pack(client, run) -> None:
    try:
        _compat.artifact_repository(run.info.artifact_uri).delete_artifacts("pack")
    except (MlflowException, NotImplementedError, OSError) as exc:
        LOGGER.warning("the bytes of store run %s could not be erased (%s): `mlflow gc` removes them once the run "
                       "is deleted", run.info.run_id, exc)
    client.delete_run(run.info.run_id)
