"""Dataset snapshots: the files of one content digest, stored once per tracking server.

The first run that logs a digest uploads its files (a folder version's samples and archive, a COCO
dataset's annotation files, images and previews) and is tagged ``dataset.snapshot_digest``: it *holds* the
snapshot. A run is only linked to a holder whose files this client can download (:func:`can_download`).
Any later run that logs the same digest, in any experiment of the server, uploads only what is new to it
(previews, reports, plots) and records where the files are: ``dataset.snapshot_run_id`` (the holder),
``dataset.snapshot_uri`` (``runs:/<holder>/<path>``) and the archive's sha256. The holder is tagged
``dataset.snapshot_shared`` the first time another run relies on it, so whoever deletes it is warned.

``snapshot=copy`` makes a run upload its own copy (it then holds one too), e.g. when the first run
will be deleted. A deleted holder is never found again (searches see active runs only), so the next run
of that digest uploads the files anew; runs that pointed at it keep a link that ``compare`` flags.

Like W&B artifacts and DVC, storage then grows with unique content, not with runs.
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from typing import Callable, Iterator

import mlflow
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from image_lineage.core.names import (
    SNAPSHOT_CHOICES, TAG_ARCHIVE_SHA256, TAG_SNAPSHOT, TAG_SNAPSHOT_DIGEST, TAG_SNAPSHOT_SHARED, TAG_SNAPSHOT_URI,
    TAG_STORE_PACKS,
    require_choice,
)
from image_lineage.tracking.artifacts import staging, upload_folder

LOGGER = logging.getLogger(__name__)
EXPERIMENTS_PER_SEARCH = 100  # experiment ids per search_runs request


def require_snapshot_choice(value: str) -> None:
    require_choice("snapshot", value, SNAPSHOT_CHOICES)


def find_holder(digest: str, experiment_id: str | None = None) -> mlflow.entities.Run | None:
    """The first FINISHED, active run that holds the files of ``digest`` where this client can read them.

    The run's own experiment is asked first (one request: a re-log there costs no more than before);
    then every other active experiment of the server. A holder whose files cannot be read from here is
    passed over (:func:`can_download`): linking to it would leave the new run without files."""
    for holder in holder_candidates(digest, experiment_id):
        if can_download(holder):
            return holder
        LOGGER.warning("run %s holds the files of digest %s at %s, but this client cannot read them (%s): "
                       "this run stores its own copy", holder.info.run_id, digest[:12],
                       holder.data.tags.get(TAG_SNAPSHOT_URI), holder.info.artifact_uri)
    return None


def holder_candidates(digest: str, experiment_id: str | None) -> Iterator[mlflow.entities.Run]:
    """Runs that hold ``digest``: the first of ``experiment_id``, then the first of the other experiments
    (the oldest first); the other experiments are asked only when needed."""
    query = f"tags.`{TAG_SNAPSHOT_DIGEST}` = '{digest}' and attributes.status = 'FINISHED'"
    if experiment_id is not None:
        found = search_first([experiment_id], query)
        if found:
            yield found
    others = [e.experiment_id for e in all_experiments() if e.experiment_id != experiment_id]
    candidates = [run for start in range(0, len(others), EXPERIMENTS_PER_SEARCH)
                  if (run := search_first(others[start:start + EXPERIMENTS_PER_SEARCH], query))]
    yield from sorted(candidates, key=lambda run: run.info.start_time)


def can_download(holder: mlflow.entities.Run) -> bool:
    """Whether this client can read the files ``holder`` stored: its snapshot path is listed where MLflow would
    download it from. A run logged with a local ``./mlruns`` (``make demo``, a clone since removed, another
    machine's disk) records a local artifact path: a tracking server sharing its store lists it empty here."""
    uri, prefix = holder.data.tags.get(TAG_SNAPSHOT_URI, ""), f"runs:/{holder.info.run_id}/"
    if not uri.startswith(prefix):
        return False
    path = uri.removeprefix(prefix).rstrip("/")
    try:
        listed = mlflow.MlflowClient().list_artifacts(holder.info.run_id, posixpath.dirname(path) or None)
    except (MlflowException, OSError) as exc:
        LOGGER.debug("listing the artifacts of run %s failed: %s", holder.info.run_id, exc)
        return False
    return any(entry.path == path for entry in listed)


def search_first(experiment_ids: list[str], query: str) -> mlflow.entities.Run | None:
    runs = mlflow.MlflowClient().search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, max_results=1,
                                             order_by=["attributes.start_time ASC"])
    return runs[0] if runs else None


def all_experiments() -> list[mlflow.entities.Experiment]:
    client, found, token = mlflow.MlflowClient(), [], None
    while True:
        page = client.search_experiments(ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def holder_tags(run_id: str, path: str) -> dict[str, str]:
    """The tag of a run that uploads the files itself: where they are (``path``, in its artifacts: samples, or
    the content store's map)."""
    return {TAG_SNAPSHOT_URI: f"runs:/{run_id}/{path}"}


def link_tags(holder: mlflow.entities.Run) -> dict[str, str]:
    """Tags of a run that relies on ``holder``'s files: which run, where, and the archive's sha256."""
    tags = {TAG_SNAPSHOT: holder.info.run_id, TAG_SNAPSHOT_URI: holder.data.tags.get(TAG_SNAPSHOT_URI, "")}
    # a holder logged before the content store: its archive's sha256 (COCO: dataset.archive_sha256.<split>)
    tags.update({k: v for k, v in holder.data.tags.items() if k.startswith(TAG_ARCHIVE_SHA256)})
    # the packs it relies on: a garbage collection keeps them while this run is active, whatever becomes of the holder
    tags.update({k: v for k, v in holder.data.tags.items() if k.startswith(TAG_STORE_PACKS)})
    return tags


def mark_shared(holder: mlflow.entities.Run) -> None:
    """Tag the holder as relied on by other runs (once): deleting it would leave their links dangling."""
    if holder.data.tags.get(TAG_SNAPSHOT_SHARED) == "true":
        return
    try:
        mlflow.MlflowClient().set_tag(holder.info.run_id, TAG_SNAPSHOT_SHARED, "true")
    except MlflowException as exc:  # the link is recorded in the new run either way
        LOGGER.warning("could not tag run %s as a shared snapshot: %s", holder.info.run_id, exc.message)


def store_or_link(digest: str, holder: mlflow.entities.Run | None, stage_data: Callable[[Path], dict[str, str]] | None,
                  stage_own: Callable[[Path], None] | None = None) -> dict[str, str]:
    """The one store-or-link stage: the run's own files (``stage_own(folder)``: reports, plots, previews)
    are always uploaded; the data's files (``stage_data(folder)``, which returns the holder tags beyond the
    digest: where the files are, archive sha256s) only when no ``holder`` run holds ``digest`` yet. Returns
    the run's snapshot tags: where the files are, and which run holds them. ``stage_data=None``: this flow
    stores no data files, and links to a holder when there is one."""
    with staging() as folder:
        if stage_own is not None:
            stage_own(folder)
        stored = stage_data(folder) if holder is None and stage_data is not None else None
        if any(folder.iterdir()):
            upload_folder(folder)
    if holder is not None:
        LOGGER.info("digest %s already stored by run %s: files not uploaded again", digest[:12], holder.info.run_id)
        mark_shared(holder)
        return link_tags(holder)
    return {TAG_SNAPSHOT_DIGEST: digest, **stored} if stored is not None else {}


def missing_holders(holder_ids) -> set[str]:
    """The run ids among ``holder_ids`` that are deleted or gone: links to them dangle."""
    client, missing = mlflow.MlflowClient(), set()
    for holder in set(holder_ids):
        try:
            if client.get_run(holder).info.lifecycle_stage != "active":
                missing.add(holder)
        except MlflowException:
            missing.add(holder)
    return missing
