"""The content store: every unique file once per tracking server, however many versions contain it.

MLflow keeps artifacts per run, and a request per file is slow, so the files a version adds are packed
(:mod:`image_lineage.data.packs`: one deterministic pack of the new files, checked by sha256) and each pack is
held by a run of one experiment, ``image-lineage-store`` (``IMAGE_LINEAGE_STORE_EXPERIMENT``), under
``pack/<sha256>.pack`` with its index ``pack/<sha256>.idx``. A version run keeps, besides its own evidence,
``store.json.gz``: for every file its name, sha256, size, pack and offset; and tag ``dataset.store_packs``
lists its packs (16 hex digits each), so a garbage collection knows what the active runs still need.

A version uploads only the files no pack holds yet, and only relies on packs this client can read (a pack
whose run's artifacts are not listed from here is stored again). Deleting version runs never breaks
another: packs belong to the store; :func:`deletion_report` says what a deletion would orphan and
:func:`collect_garbage` removes the packs no active run lists (a dry run unless asked).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import mlflow
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_PACK_INDEX_SHA256, TAG_PACK_SHA256, TAG_PACK_SIZE, TAG_STORE_PACKS
from image_lineage.data.packs import PackEntry, PackIndex, write_pack
from image_lineage.tracking import _compat

LOGGER = logging.getLogger(__name__)
MAP_NAME = "store.json.gz"
MAP_FORMAT = "image-lineage-store-map 1"
PACK_MAX_BYTES = 1 << 30  # past this a version's new files go into several packs: a failed upload redoes one
PACK_ID_LEN = 16  # pack ids in tags: 17 characters each with the comma
PACKS_PER_TAG = 400  # MLflow tag values stop at 8,000 characters
EXPERIMENTS_PER_SEARCH = 100


@dataclass(frozen=True)
class StoredPack:
    run_id: str
    index: PackIndex

    @property
    def sha256(self) -> str:
        return self.index.sha256

    @property
    def artifact_path(self) -> str:
        return f"pack/{self.sha256}.pack"


@dataclass
class ContentStore:
    """The packs of one tracking server (active, FINISHED store runs) and where each file is."""

    client: mlflow.MlflowClient
    experiment_id: str | None
    packs: dict[str, StoredPack] = field(default_factory=dict)
    where: dict[str, tuple[str, PackEntry]] = field(default_factory=dict)  # file sha256 -> (pack sha256, entry)
    readable: dict[str, bool] = field(default_factory=dict)  # pack sha256 -> listed from this client

    @classmethod
    def open(cls, client: mlflow.MlflowClient | None = None) -> "ContentStore":
        client = client or mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(config.store_experiment())
        store = cls(client, experiment.experiment_id if experiment and experiment.lifecycle_stage == "active" else None)
        for run in store.store_runs():
            store.remember(StoredPack(run.info.run_id, store.pack_index(run)))
        return store

    def store_runs(self) -> list:
        if self.experiment_id is None:
            return []
        return search_all(self.client, [self.experiment_id], f"attributes.status = 'FINISHED' and tags.`{TAG_PACK_SHA256}` LIKE '%'")

    def remember(self, pack: StoredPack) -> None:
        self.packs[pack.sha256] = pack
        for entry in pack.index.entries:
            self.where.setdefault(entry.sha256, (pack.sha256, entry))

    def pack_index(self, run) -> PackIndex:
        """A store run's pack index, from the local cache when it is there and whole (checked against the
        run's tag), else downloaded (and cached: an index never changes)."""
        pack_sha, index_sha = run.data.tags[TAG_PACK_SHA256], run.data.tags.get(TAG_PACK_INDEX_SHA256, "")
        cached = index_cache_dir() / f"{pack_sha}.idx" if index_cache_dir() else None
        if cached is not None and cached.is_file():
            text = cached.read_bytes()
            if hashlib.sha256(text).hexdigest() == index_sha:
                return PackIndex.from_text(text.decode(), str(cached))
        with tempfile.TemporaryDirectory(prefix="image_lineage_idx_") as tmp:
            local = Path(self.client.download_artifacts(run.info.run_id, f"pack/{pack_sha}.idx", tmp))
            text = local.read_bytes()
        if hashlib.sha256(text).hexdigest() != index_sha:
            raise LineageError(f"the index of pack {pack_sha[:12]} (store run {run.info.run_id}) does not match its "
                               f"sha256 tag: the store is damaged; delete that run and log the versions again.")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(f".{uuid.uuid4().hex}.partial")
            partial.write_bytes(text)
            partial.replace(cached)
        return PackIndex.from_text(text.decode(), f"pack/{pack_sha}.idx")

    def can_read(self, pack_sha: str) -> bool:
        """Whether this client lists the pack where MLflow would download it from (a store run logged to a
        local ``./mlruns`` is listed empty through a server sharing its tracking store)."""
        if pack_sha not in self.readable:
            pack = self.packs[pack_sha]
            try:
                listed = {entry.path for entry in self.client.list_artifacts(pack.run_id, "pack")}
            except (MlflowException, OSError) as exc:
                LOGGER.debug("listing the packs of store run %s failed: %s", pack.run_id, exc)
                listed = set()
            self.readable[pack_sha] = pack.artifact_path in listed
            if not self.readable[pack_sha]:
                LOGGER.warning("pack %s (store run %s) cannot be read from this client: its files are stored again",
                               pack_sha[:12], pack.run_id)
        return self.readable[pack_sha]

    def locate(self, sha256: str) -> tuple[str, PackEntry] | None:
        found = self.where.get(sha256)
        return found if found is not None and self.can_read(found[0]) else None

    def add(self, files: Iterable[tuple[str, str | Path]]) -> list[StoredPack]:
        """Store the files (``(sha256, path)``) that no readable pack holds yet, in new packs; return them."""
        missing: dict[str, str | Path] = {}
        for sha256, path in files:
            if sha256 not in missing and self.locate(sha256) is None:
                missing[sha256] = path
        batches, batch, size = [], [], 0
        for sha256, path in sorted(missing.items()):
            batch.append((sha256, path))
            size += Path(path).stat().st_size
            if size >= PACK_MAX_BYTES:
                batches, batch, size = batches + [batch], [], 0
        return [self.upload_pack(b) for b in batches + ([batch] if batch else [])]

    def upload_pack(self, files: list[tuple[str, str | Path]]) -> StoredPack:
        """One pack of ``files`` in a new store run, FINISHED only once the pack and its index are uploaded."""
        experiment_id = self.experiment_id or self.create_experiment()
        with tempfile.TemporaryDirectory(prefix="image_lineage_pack_") as tmp:
            index = write_pack(files, Path(tmp) / "pending.pack")
            pack_path, index_path = Path(tmp) / f"{index.sha256}.pack", Path(tmp) / f"{index.sha256}.idx"
            (Path(tmp) / "pending.pack").rename(pack_path)
            index_text = index.to_text().encode()
            index_path.write_bytes(index_text)
            tags = {TAG_PACK_SHA256: index.sha256, TAG_PACK_INDEX_SHA256: hashlib.sha256(index_text).hexdigest(),
                    TAG_PACK_SIZE: str(index.size)}
            run = self.client.create_run(experiment_id, run_name=f"pack {index.sha256[:12]}",
                                         tags={**tags, "store.files": str(len(index.entries))})
            try:
                repository = _compat.artifact_repository(run.info.artifact_uri)
                repository.log_artifact(str(pack_path), "pack")
                repository.log_artifact(str(index_path), "pack")
            except BaseException:
                self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
                raise
        self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        pack = StoredPack(run.info.run_id, index)
        self.remember(pack)
        self.readable[pack.sha256] = True
        LOGGER.info("stored %d new files (%.1f MB) in pack %s", len(index.entries), index.size / 1e6, index.sha256[:12])
        return pack

    def create_experiment(self) -> str:
        name = config.store_experiment()
        try:
            self.experiment_id = self.client.create_experiment(name)
        except MlflowException:  # created meanwhile by another run
            self.experiment_id = self.client.get_experiment_by_name(name).experiment_id
        return self.experiment_id


def index_cache_dir() -> Path | None:
    root = config.cache_dir()
    return root / "pack_indexes" if root is not None else None


def search_all(client: mlflow.MlflowClient, experiment_ids: list[str], query: str) -> list:
    found, token = [], None
    while True:
        page = client.search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


# -- a version's files in the store ---------------------------------------------------------------------------

def store_version(files: list[tuple[str, str, int, str]], folder: Path, manifest: str | None = None) -> dict[str, str]:
    """Store the files of a version (``(name, sha256, size, path on disk)``) and write its map,
    ``folder/store.json.gz``; return the run's tags naming its packs.

    With ``manifest`` (the name of the manifest the run keeps beside the map, whose records are ``files`` in
    the same order) the map holds only each file's pack and offset: names, sizes and sha256s are the
    manifest's. At 100,000 photos that is 0.5 MB instead of 4.5 MB a version, next to 36 MB of changed files."""
    store = ContentStore.open()
    store.add((sha256, path) for _, sha256, _, path in files)
    located = [store.locate(sha256) for _, sha256, _, _ in files]
    used = sorted({pack for pack, _ in located})
    number = {sha: position for position, sha in enumerate(used)}
    version_map = {
        "format": MAP_FORMAT,
        "packs": [{"sha256": sha, "run_id": store.packs[sha].run_id, "size": store.packs[sha].index.size} for sha in used],
    }
    if manifest is not None:
        version_map.update(manifest=manifest, locations=[[number[pack], entry.offset] for pack, entry in located])
    else:
        version_map["files"] = [[name, sha256, size, number[pack], entry.offset]
                                for (name, sha256, size, _), (pack, entry) in zip(files, located)]
    (folder / MAP_NAME).write_bytes(gzip.compress(json.dumps(version_map, separators=(",", ":")).encode(), 6, mtime=0))
    return packs_tags(used)


def packs_tags(pack_shas: list[str]) -> dict[str, str]:
    ids = [sha[:PACK_ID_LEN] for sha in pack_shas]
    chunks = [ids[i:i + PACKS_PER_TAG] for i in range(0, len(ids), PACKS_PER_TAG)] or [[]]
    return {TAG_STORE_PACKS if n == 0 else f"{TAG_STORE_PACKS}.{n + 1}": ",".join(chunk) for n, chunk in enumerate(chunks)}


def tagged_packs(tags: dict[str, str]) -> set[str]:
    return {pack for key, value in tags.items() if key == TAG_STORE_PACKS or key.startswith(f"{TAG_STORE_PACKS}.")
            for pack in value.split(",") if pack}
