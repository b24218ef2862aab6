"""The content store: every unique file once per tracking server, however many versions contain it.

MLflow keeps artifacts per run, and a request per file is slow, so the files a version adds are packed
(:mod:`image_lineage.data.packs`: one deterministic pack of the new files, checked by sha256) and each pack is
held by a run of one experiment, ``image-lineage-store`` (``IMAGE_LINEAGE_STORE_EXPERIMENT``), under
``pack/<sha256>.pack`` with its index ``pack/<sha256>.idx.gz``. A version run keeps, besides its own
evidence, ``store.json.gz``: for every file of its manifest, the pack and offset that hold it (a COCO split's
map names its files too); tag ``dataset.store_packs`` lists its packs (16 hex digits each), so a garbage
collection knows what the active runs still need.

A version uploads only the files no pack holds yet, and only relies on packs this client can read (a pack
whose run's artifacts are not listed from here is stored again). Deleting version runs never breaks
another: packs belong to the store (:mod:`.store_gc` says what a deletion would orphan, and removes the packs
no active run lists); :mod:`.downloads` rebuilds any version from them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import mlflow
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_PACK_INDEX_SHA256, TAG_PACK_SHA256, TAG_PACK_SIZE, TAG_STORE_PACKS
from image_lineage.data.packs import PackEntry, PackIndex, file_key, write_pack
from image_lineage.tracking import _compat

LOGGER = logging.getLogger(__name__)
MAP_NAME = "store.json.gz"
MAP_FORMAT = "image-lineage-store-map 1"
PACK_MAX_BYTES = 256 << 20  # a version's new files go into packs of about this size: some are uploaded while the
# next is written (see UPLOAD_THREADS), a download reads one while it fetches the next two, and a failed transfer
# redoes one
# Two uploads at a time: one PUT through an `mlflow server` here moved ~100 MB/s; with two, the cold log of
# 100,000 photos took 28.8 s instead of 32.2 s. At most UPLOAD_THREADS + 1 packs wait on local disk.
UPLOAD_THREADS = 2
PACK_ID_LEN = 16  # pack ids in tags: 17 characters each with the comma
PACKS_PER_TAG = 400  # MLflow tag values stop at 8,000 characters


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
    where: dict[str, tuple[str, PackEntry]] = field(default_factory=dict)  # file key -> (pack sha256, entry)
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
        query = f"attributes.status = 'FINISHED' and tags.`{TAG_PACK_SHA256}` LIKE '%'"
        return search_all(self.client, [self.experiment_id], query)

    def remember(self, pack: StoredPack) -> None:
        self.packs[pack.sha256] = pack
        for entry in pack.index.entries:
            self.where.setdefault(file_key(entry.sha256), (pack.sha256, entry))

    def pack_index(self, run) -> PackIndex:
        """A store run's pack index (``pack/<sha256>.idx.gz``), from the local cache when it is there and whole
        (checked against the run's tag), else downloaded (and cached: an index never changes)."""
        pack_sha, index_sha = run.data.tags[TAG_PACK_SHA256], run.data.tags.get(TAG_PACK_INDEX_SHA256, "")
        name = f"{pack_sha}.idx.gz"
        cached = index_cache_dir() / name if index_cache_dir() else None
        if cached is not None and cached.is_file():
            data = cached.read_bytes()
            if hashlib.sha256(data).hexdigest() == index_sha:
                return PackIndex.from_text(gzip.decompress(data).decode(), str(cached))
        with tempfile.TemporaryDirectory(prefix="image_lineage_idx_") as tmp:
            data = Path(self.client.download_artifacts(run.info.run_id, f"pack/{name}", tmp)).read_bytes()
        if hashlib.sha256(data).hexdigest() != index_sha:
            raise LineageError(f"the index of pack {pack_sha[:12]} (store run {run.info.run_id}) does not match its "
                               f"sha256 tag: the store is damaged; delete that run and log the versions again.")
        cache_index(name, data)
        return PackIndex.from_text(gzip.decompress(data).decode(), f"pack/{name}")

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
        found = self.where.get(file_key(sha256))
        return found if found is not None and self.can_read(found[0]) else None

    def add(self, files: Iterable[tuple[str, int, str | Path]]) -> list[StoredPack]:
        """Store the files (``(sha256, size, path)``; a path may be an object of a streamed prefix) that no
        readable pack holds yet, in new packs; return them.

        Packs are written here while those before are uploaded on other threads (writing reads and hashes
        every file; an upload waits on the network and the server)."""
        missing: dict[str, tuple[int, str | Path]] = {}
        for sha256, file_size, path in files:
            if sha256 in missing:
                continue
            found = self.locate(sha256)
            if found is None:
                missing[sha256] = file_size, path
            elif found[1].size != file_size:  # another file under the same key (the first 128 bits of its sha256)
                raise LineageError(f"{path}: the content store holds a file of {found[1].size} bytes under this "
                                   f"file's key {file_key(sha256)}, which has {file_size}: two files share a sha256 "
                                   f"prefix, or pack {found[0][:12]} is damaged. Nothing was stored; report it.")
        batches, batch, size = [], [], 0
        for sha256, (file_size, path) in sorted(missing.items()):
            batch.append((sha256, path))
            size += file_size
            if size >= PACK_MAX_BYTES:
                batches, batch, size = batches + [batch], [], 0
        batches += [batch] if batch else []
        experiment_id = self.experiment_id or self.create_experiment() if batches else None
        uploads = []
        with tempfile.TemporaryDirectory(prefix="image_lineage_pack_") as tmp, \
                ThreadPoolExecutor(UPLOAD_THREADS) as uploader:
            for number, batch in enumerate(batches):
                if len(uploads) > UPLOAD_THREADS:
                    uploads[-UPLOAD_THREADS - 1].result()  # bounded: packs wait on local disk for their upload
                path = Path(tmp) / f"{number}.pack"
                index = write_pack(batch, path)
                uploads.append(uploader.submit(self.upload_pack, experiment_id, path, index))
            return [upload.result() for upload in uploads]

    def upload_pack(self, experiment_id: str, path: Path, index: PackIndex) -> StoredPack:
        """A written pack and its index in a new store run, FINISHED only once both are uploaded; the local
        pack is removed afterwards."""
        pack_path, index_path = path.with_name(f"{index.sha256}.pack"), path.with_name(f"{index.sha256}.idx.gz")
        path.rename(pack_path)
        index_text = gzip.compress(index.to_text().encode(), 6, mtime=0)
        index_path.write_bytes(index_text)
        tags = {TAG_PACK_SHA256: index.sha256, TAG_PACK_INDEX_SHA256: hashlib.sha256(index_text).hexdigest(),
                TAG_PACK_SIZE: str(index.size), "store.files": str(len(index.entries))}
        run = self.client.create_run(experiment_id, run_name=f"pack {index.sha256[:12]}", tags=tags)
        try:
            repository = _compat.artifact_repository(run.info.artifact_uri)
            repository.log_artifact(str(pack_path), "pack")
            repository.log_artifact(str(index_path), "pack")
        except BaseException:
            self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        finally:
            pack_path.unlink(missing_ok=True)
        self.client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        cache_index(index_path.name, index_text)
        pack = StoredPack(run.info.run_id, index)
        self.remember(pack)
        self.readable[pack.sha256] = True
        LOGGER.info("stored %d new files (%.1f MB) in pack %s", len(index.entries), index.size / 1e6, index.sha256[:12])
        return pack

    def create_experiment(self) -> str:
        name = config.store_experiment()
        existing = self.client.get_experiment_by_name(name)
        if existing is not None and existing.lifecycle_stage != "active":
            raise LineageError(f"the content store's experiment {name!r} is deleted: restore it (`mlflow experiments "
                               f"restore --experiment-id {existing.experiment_id}`), or name another store with "
                               f"{config.STORE_EXPERIMENT}.")
        try:
            self.experiment_id = self.client.create_experiment(name) if existing is None else existing.experiment_id
        except MlflowException:  # created meanwhile by another run
            self.experiment_id = self.client.get_experiment_by_name(name).experiment_id
        return self.experiment_id


def index_cache_dir() -> Path | None:
    root = config.cache_dir()
    return root / "pack_indexes" if root is not None else None


def cache_index(name: str, data: bytes) -> None:
    """Keep a pack index locally (written beside, then renamed: a reader never sees half of one)."""
    folder = index_cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f"{name}.{uuid.uuid4().hex}.partial"
        partial.write_bytes(data)
        partial.replace(folder / name)
    except OSError as exc:  # the cache only saves a download
        LOGGER.debug("pack index %s not cached: %s", name, exc)


def search_all(client: mlflow.MlflowClient, experiment_ids: list[str], query: str) -> list:
    found, token = [], None
    while True:
        page = client.search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


# -- a version's files in the store ---------------------------------------------------------------------------

def store_version(files: list[tuple[str, str, int, str]], folder: Path, manifest: str | None = None) -> set[str]:
    """Store the files of a version (``(name, sha256, size, path on disk)``) and write its map,
    ``folder/store.json.gz``; return the sha256s of the packs it is in (:func:`packs_tags` names them in tags).

    With ``manifest`` (the name of the manifest the run keeps beside the map, whose records are ``files`` in
    the same order) the map holds only each file's pack and offset: names, sizes and sha256s are the
    manifest's. At 100,000 photos that is 0.5 MB instead of 4.5 MB a version, next to 36 MB of changed files."""
    store = ContentStore.open()
    store.add((sha256, size, path) for _, sha256, size, path in files)
    located = [store.locate(sha256) for _, sha256, _, _ in files]
    used = sorted({pack for pack, _ in located})
    number = {sha: position for position, sha in enumerate(used)}
    version_map = {
        "format": MAP_FORMAT,
        "packs": [{"sha256": sha, "run_id": store.packs[sha].run_id, "size": store.packs[sha].index.size}
                  for sha in used],
    }
    if manifest is not None:
        version_map.update(manifest=manifest, locations=[[number[pack], entry.offset] for pack, entry in located])
    else:
        version_map["files"] = [[name, sha256, size, number[pack], entry.offset]
                                for (name, sha256, size, _), (pack, entry) in zip(files, located)]
    (folder / MAP_NAME).write_bytes(gzip.compress(json.dumps(version_map, separators=(",", ":")).encode(), 6, mtime=0))
    return set(used)


def packs_tags(pack_shas: Iterable[str]) -> dict[str, str]:
    """The tags of a run that relies on these packs (none for none)."""
    ids = sorted({sha[:PACK_ID_LEN] for sha in pack_shas})
    if not ids:
        return {}
    chunks = [ids[i:i + PACKS_PER_TAG] for i in range(0, len(ids), PACKS_PER_TAG)] or [[]]
    return {TAG_STORE_PACKS if n == 0 else f"{TAG_STORE_PACKS}.{n + 1}": ",".join(chunk)
            for n, chunk in enumerate(chunks)}


def tagged_packs(tags: dict[str, str]) -> set[str]:
    return {pack for key, value in tags.items() if key == TAG_STORE_PACKS or key.startswith(f"{TAG_STORE_PACKS}.")
            for pack in value.split(",") if pack}
