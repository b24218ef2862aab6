"""The trace index: every image (by sha256) of every dataset version logged on a tracking server, the runs that
logged, checked or trained on each version, and the registered model versions those runs made.

Built from what the runs already hold, and from the tracking server alone (lose the file: it is rebuilt):

* a version's images come from the manifests runs store (``manifest.json[.gz]`` of a folder version, of each
  ``datasets/<name>/[<split>/]`` a script logged, of each COCO split under ``coco/<split>/`` and each form
  under ``hf/<split>/``); a manifest is downloaded once per digest, and never for a digest already indexed
  (the run's digest tags say which digest a manifest is before it is read);
* a run belongs to the versions its tags (``dataset.digest``, ``dataset.digest.<split>``: full sha256s) and
  dataset inputs (their 32-digit digests) name;
* model versions, and their aliases, are listed whole on every refresh (a few requests).

A refresh asks only for runs that ended since the last one, the runs deleted (or restored) since, and the
experiments that exist: a new run adds its manifests once. Deleted runs, runs of deleted experiments and
deleted model versions drop out of every answer; a version no live run names drops out with them.

The index is one sqlite file per tracking server (``$IMAGE_LINEAGE_CACHE_DIR/trace/``, or where the user says),
with ``SCHEMA_VERSION`` in its ``user_version``: a file of another layout, or one sqlite cannot read, is rebuilt
from the tracking server, never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.core.names import TAG_DIGEST
from image_lineage.data.versioned_sqlite import build_fresh, stored_version
from image_lineage.tracking.downloads import MANIFESTS, read_manifest

LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 1: run_digests without context
TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    # every ended run that names a dataset; lifecycle: active, or deleted (its experiment's, or its own)
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment_id TEXT, run_name TEXT, status TEXT, entry TEXT,"
    " end_time INTEGER, lifecycle TEXT)",
    # the datasets a run names: a full sha256 (tags) or the 32 digits of a dataset input (with its MLflow context),
    # with its split; role: checked (a leakage check), trained (its entry point trains), else logged
    "CREATE TABLE run_digests (run_id TEXT, digest TEXT, split TEXT, context TEXT, role TEXT)",
    "CREATE INDEX run_digests_by_digest ON run_digests (digest)",
    "CREATE INDEX run_digests_by_run ON run_digests (run_id)",
    # a version whose manifest was read: from which run and artifact
    "CREATE TABLE versions (digest TEXT PRIMARY KEY, run_id TEXT, artifact TEXT, images INTEGER)",
    "CREATE TABLE files (sha256 TEXT, digest TEXT, path TEXT, label TEXT)",
    "CREATE INDEX files_by_sha256 ON files (sha256)",
    "CREATE INDEX files_by_path ON files (path)",
    "CREATE TABLE models (name TEXT, version TEXT, run_id TEXT, aliases TEXT, digests TEXT, PRIMARY KEY (name, version))",
    "CREATE TABLE experiments (experiment_id TEXT PRIMARY KEY, name TEXT)",
)
MANIFEST_HOMES = ("coco", "hf", "datasets")  # artifact folders whose sub-folders may hold a split's manifest
CLOCK_MARGIN_MS = 5_000  # runs that ended this long before the last refresh's newest are asked for again


@dataclass
class RefreshReport:
    runs_added: int = 0
    runs_dropped: int = 0
    manifests_read: int = 0
    models: int = 0


class TraceIndex:
    """One index file for one tracking server; see the module docstring."""

    def __init__(self, path: str | Path | None = None, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.path = Path(path) if path else default_path(self.tracking_uri)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.stored_version() != SCHEMA_VERSION:
            self.rebuild()

    # ------------------------------------------------------------ the file

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def stored_version(self) -> int | None:
        """The file's schema version; None when it is missing, unreadable, or of another tracking server."""
        version = stored_version(self.path, timeout=60)
        if version is None:
            return None
        try:
            with contextlib.closing(self.connect()) as db:
                uri = db.execute("SELECT value FROM meta WHERE key = 'tracking_uri'").fetchone()
        except sqlite3.DatabaseError:
            return None
        return version if uri and uri[0] == self.tracking_uri else None

    def rebuild(self) -> None:
        """An empty index in place of whatever is there (:func:`image_lineage.data.versioned_sqlite.build_fresh`)."""
        if self.path.exists():
            LOGGER.info("trace index %s is of another layout or server (or damaged): rebuilt", self.path)
        build_fresh(self.path, [*TABLES, ("INSERT INTO meta VALUES ('tracking_uri', ?), ('watermark', '0')",
                                          (self.tracking_uri,))], SCHEMA_VERSION)

    # ------------------------------------------------------------ refresh from the tracking server

    def refresh(self) -> RefreshReport:
        """Bring the index up to date with the tracking server (see the module docstring for what is asked)."""
        try:
            return self._refresh()
        except sqlite3.DatabaseError as exc:  # damaged under our feet: start over from the server
            LOGGER.warning("trace index %s unreadable (%s): rebuilt from the tracking server", self.path, exc)
            self.rebuild()
            return self._refresh()

    def _refresh(self) -> RefreshReport:
        client = mlflow.MlflowClient(self.tracking_uri)
        report = RefreshReport()
        experiments = {e.experiment_id: e.name for e in paged(client.search_experiments, view_type=ViewType.ACTIVE_ONLY)}
        with contextlib.closing(self.connect()) as db, db:
            db.execute("DELETE FROM experiments")
            db.executemany("INSERT INTO experiments VALUES (?, ?)", experiments.items())
            watermark = int(db.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()[0])
            known = dict(db.execute("SELECT run_id, lifecycle FROM runs"))
            ends = dict(db.execute("SELECT run_id, end_time FROM runs"))
        # a known run that ended again (resumed with mlflow.start_run(run_id=...)) is read again: it may name more
        ended = [run for run in self.search(client, list(experiments), f"attributes.end_time >= {watermark}")
                 if run.info.end_time and ends.get(run.info.run_id) != run.info.end_time and names_a_dataset(run)]
        deleted = {run.info.run_id for run in self.search(client, list(experiments), "", ViewType.DELETED_ONLY)}
        # a deleted run no longer listed as deleted was restored, or removed for good (mlflow gc): ask which
        restored = [run_id for run_id, lifecycle in known.items()
                    if lifecycle == "deleted" and run_id not in deleted and is_active(client, run_id)]
        with contextlib.closing(self.connect()) as db, db:
            for run in ended:
                report.manifests_read += self.add_run(db, client, run)
                report.runs_added += 1
            gone = [run_id for run_id, lifecycle in known.items() if lifecycle == "active" and run_id in deleted]
            db.executemany("UPDATE runs SET lifecycle = 'deleted' WHERE run_id = ?", [(r,) for r in gone])
            db.executemany("UPDATE runs SET lifecycle = 'active' WHERE run_id = ?", [(r,) for r in restored])
            report.runs_dropped = len(gone)
            newest = max([watermark + CLOCK_MARGIN_MS, *(run.info.end_time for run in ended)]) - CLOCK_MARGIN_MS
            db.execute("UPDATE meta SET value = ? WHERE key = 'watermark'", (str(newest),))
            report.models = self.refresh_models(db, client)
        return report

    @staticmethod
    def search(client, experiment_ids: list[str], query: str, view=ViewType.ACTIVE_ONLY) -> list:
        runs = []
        for start in range(0, len(experiment_ids), 100):  # the server caps the experiments of one search
            runs += paged(client.search_runs, experiment_ids=experiment_ids[start:start + 100], filter_string=query,
                          run_view_type=view)
        return runs

    def add_run(self, db: sqlite3.Connection, client, run) -> int:
        """Index one ended run: the datasets it names, and the manifests of those not indexed yet; returns how
        many manifests it read."""
        tags = run.data.tags
        entry = tags.get("mlflow.project.entryPoint", "")  # set under `mlflow run` only
        db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, 'active')",
                   (run.info.run_id, run.info.experiment_id, run.info.run_name, run.info.status, entry,
                    run.info.end_time))
        db.execute("DELETE FROM run_digests WHERE run_id = ?", (run.info.run_id,))  # read again: what it names now
        db.executemany("INSERT INTO run_digests VALUES (?, ?, ?, ?, ?)",
                       [(run.info.run_id, *row, run_role(run)) for row in named_datasets(run)])
        if run.info.status != "FINISHED":
            return 0
        read = 0
        indexed = {row[0] for row in db.execute("SELECT digest FROM versions")}
        for artifact, expected in manifest_places(client, run):
            if expected in indexed:
                continue  # that version's images are known: nothing downloaded twice
            manifest = load_manifest(run.info.run_id, artifact, self.tracking_uri)
            digest = manifest.get("digest") or expected
            read += 1
            if not digest or digest in indexed:
                continue
            images = manifest.get("images") or []
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?)", (digest, run.info.run_id, artifact, len(images)))
            db.executemany("INSERT INTO files VALUES (?, ?, ?, ?)",
                           [(image["sha256"], digest, image["path"], image.get("label", "")) for image in images])
            indexed.add(digest)
        return read

    @staticmethod
    def refresh_models(db: sqlite3.Connection, client) -> int:
        """Every registered model version, with its aliases and the digests its tags name (listed whole: deleted
        versions drop out)."""
        aliases = {}
        for model in paged(client.search_registered_models):
            for alias, version in (model.aliases or {}).items():
                aliases.setdefault((model.name, str(version)), []).append(alias)
        rows = []
        for version in paged(client.search_model_versions):
            digests = sorted({value for key, value in (version.tags or {}).items()
                              if key == TAG_DIGEST or key.startswith(f"{TAG_DIGEST}.") and len(value) == 64})
            rows.append((version.name, str(version.version), version.run_id,
                         ",".join(sorted(aliases.get((version.name, str(version.version)), []))), ",".join(digests)))
        db.execute("DELETE FROM models")
        db.executemany("INSERT INTO models VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    # ------------------------------------------------------------ answers

    def files_of(self, sha256s: list[str]) -> list[tuple[str, str, str, str]]:
        """(sha256, version digest, path, label) of every place the indexed versions hold these bytes."""
        return self.select("SELECT sha256, digest, path, label FROM files WHERE sha256 IN ({})", sha256s)

    def files_at(self, paths: list[str]) -> list[tuple[str, str, str, str]]:
        return self.select("SELECT sha256, digest, path, label FROM files WHERE path IN ({})", paths)

    def version_files(self, digest: str) -> list[tuple[str, str, str]]:
        """(sha256, path, label) of every image of an indexed version, by path."""
        with contextlib.closing(self.connect()) as db:
            return db.execute("SELECT sha256, path, label FROM files WHERE digest = ? ORDER BY path", (digest,)).fetchall()

    def version_holder(self, digest: str) -> tuple[str, str] | None:
        """(run id, manifest artifact) the version's images were indexed from."""
        with contextlib.closing(self.connect()) as db:
            return db.execute("SELECT run_id, artifact FROM versions WHERE digest = ?", (digest,)).fetchone()

    def full_digest(self, prefix: str) -> str | None:
        """The indexed version digest that starts with ``prefix`` (a dataset input's 32 digits), if exactly one."""
        with contextlib.closing(self.connect()) as db:
            found = [row[0] for row in db.execute("SELECT digest FROM versions WHERE digest >= ? AND digest < ? LIMIT 2",
                                                  (prefix, prefix + "g"))]
        return found[0] if len(found) == 1 else None

    def sha256s_starting(self, prefix: str) -> list[str]:
        with contextlib.closing(self.connect()) as db:
            return [row[0] for row in db.execute(
                "SELECT DISTINCT sha256 FROM files WHERE sha256 >= ? AND sha256 < ? LIMIT 20", (prefix, prefix + "g"))]

    def runs_of(self, digests: list[str]) -> list[tuple]:
        """(digest, run id, run name, experiment, status, entry, split, context, role) of the live runs that name
        each version (by its sha256, or by the 32 digits of a dataset input), one row per run and version. A run
        that made a registered model version is ``trained``."""
        keys = sorted({d for digest in digests for d in (digest, digest[:32])})
        rows = self.select(
            "SELECT d.digest, r.run_id, r.run_name, e.name, r.status, r.entry, d.split, d.context, d.role "
            "FROM run_digests d JOIN runs r USING (run_id) JOIN experiments e USING (experiment_id) "
            "WHERE r.lifecycle = 'active' AND d.digest IN ({})", keys)
        makers = set(row[0] for row in self.select("SELECT run_id FROM models WHERE run_id IN ({})",
                                                   sorted({row[1] for row in rows})))
        full = {digest[:32]: digest for digest in digests}
        merged: dict[tuple, tuple[set, set, set]] = {}  # a run names a version by several tags and its input: one row
        for digest, *run, split, context, role in rows:
            splits, contexts, roles = merged.setdefault((full.get(digest, digest), *run), (set(), set(), set()))
            splits.add(split)
            contexts.add(context)
            roles.add("trained" if run[0] in makers else role)
        return sorted((*key, *(",".join(sorted(filter(None, values))) for values in sets))
                      for key, sets in merged.items())

    def models_of(self, run_ids: list[str], digests: list[str]) -> list[tuple]:
        """(name, version, aliases, run id) of the model versions those runs made, or tagged with those digests."""
        by_run = self.select("SELECT name, version, aliases, run_id FROM models WHERE run_id IN ({})", run_ids)
        wanted = set(digests)
        with contextlib.closing(self.connect()) as db:
            tagged = [row[:4] for row in db.execute("SELECT name, version, aliases, run_id, digests FROM models")
                      if wanted & set(filter(None, row[4].split(",")))] if wanted else []
        return sorted(set(by_run) | set(tagged), key=lambda row: (row[0], int(row[1]) if row[1].isdigit() else 0))

    def select(self, query: str, values: list[str]) -> list[tuple]:
        rows, values = [], list(values)
        with contextlib.closing(self.connect()) as db:
            for start in range(0, len(values), 500):  # sqlite caps the bound parameters
                chunk = values[start:start + 500]
                rows += db.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows


def default_path(tracking_uri: str) -> Path:
    """``$IMAGE_LINEAGE_CACHE_DIR/trace/<hash of the tracking URI>.sqlite`` (a temporary folder when the cache is off)."""
    folder = config.cache_dir()
    folder = folder / "trace" if folder else Path(tempfile.gettempdir()) / "image_lineage_trace"
    return folder / f"{hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]}.sqlite"


def is_active(client, run_id: str) -> bool:
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:  # gone from the server
        return False


def paged(method, **kwargs) -> list:
    """Every page of an MLflow search."""
    found, token = [], None
    while True:
        page = method(max_results=1000, page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def names_a_dataset(run) -> bool:
    return bool(run.inputs.dataset_inputs) or any(key.startswith(TAG_DIGEST) for key in run.data.tags)


def named_datasets(run) -> list[tuple[str, str, str]]:
    """(digest, split, MLflow context) of each dataset a run names: its digest tags (full) and its inputs (32 digits)."""
    rows = [(value, key[len(TAG_DIGEST) + 1:] if key != TAG_DIGEST else "", "")
            for key, value in run.data.tags.items()
            if (key == TAG_DIGEST or key.startswith(f"{TAG_DIGEST}.")) and len(value) == 64]
    for logged in run.inputs.dataset_inputs:
        tags = {tag.key: tag.value for tag in logged.tags}
        rows.append((logged.dataset.digest, tags.get("split") or tags.get("version") or "",
                     tags.get("mlflow.data.context", "")))
    return rows


def run_role(run) -> str:
    """What a run did with its data: ``checked`` (a leakage check alone), ``trained`` (a training entry point; any run
    that made a registered model version is counted so when asked, :meth:`TraceIndex.runs_of`), else ``logged``."""
    entry = run.data.tags.get("mlflow.project.entryPoint", "")
    if entry == "check_dataset" or run.data.tags.get("mlflow.runName", "").startswith("check_"):
        return "checked"
    if entry in ("coco_finetune", "train_registry") or run.data.tags.get("mlflow.log-model.history"):
        return "trained"
    return "logged"


def manifest_places(client, run) -> list[tuple[str, str | None]]:
    """(artifact path, the digest its tags say it is) of each manifest a run holds where the project puts them."""
    tags = run.data.tags
    top = {posixpath.basename(item.path): item for item in client.list_artifacts(run.info.run_id)}
    places = [(name, tags.get(TAG_DIGEST)) for name in MANIFESTS if name in top]
    for home in MANIFEST_HOMES:
        if home in top and top[home].is_dir:
            for child in client.list_artifacts(run.info.run_id, home):
                if child.is_dir:
                    places += split_manifests(client, run.info.run_id, child.path, tags)
    return places


def split_manifests(client, run_id: str, folder: str, tags: dict) -> list[tuple[str, str | None]]:
    """Manifests in ``folder`` (``coco/train``) and, for ``datasets/<name>``, in its split folders. The digest a
    manifest is expected to be comes from the split's own tag (``coco/<split>``, ``hf/<split>``: one split each a
    run); a script's ``datasets/<name>`` may log several datasets whose splits share names, so its manifests are
    always read (the digest inside them says which version they are)."""
    items = client.list_artifacts(run_id, folder)
    split = posixpath.basename(folder)
    own = not folder.startswith("datasets/")
    found = [(item.path, tags.get(f"{TAG_DIGEST}.{split}") if own else None) for item in items
             if posixpath.basename(item.path) in MANIFESTS]
    if not own and folder.count("/") == 1:
        for item in items:
            if item.is_dir and posixpath.basename(item.path) not in ("samples", "grids"):
                found += [(entry.path, None) for entry in client.list_artifacts(run_id, item.path)
                          if posixpath.basename(entry.path) in MANIFESTS]
    return found


def load_manifest(run_id: str, artifact: str, tracking_uri: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="image_lineage_trace_") as tmp:
        return read_manifest(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact,
                                                                      dst_path=tmp, tracking_uri=tracking_uri)))
