"""The content store (image_lineage.data.packs, image_lineage.tracking.content_store): each unique file
stored once per tracking server, any version back byte for byte, orphans listed, garbage collected."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import uuid
from pathlib import Path

import mlflow
import pytest
from helpers import artifact_paths, build_real_versions, build_unique_versions, write_image

import image_lineage

from image_lineage.cli import main as cli_main
from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_STORE_PACKS
from image_lineage.data.packs import PackEntry, PackIndex, file_key, read_files, write_pack
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking import _compat
from image_lineage.tracking.content_store import ContentStore, StoredPack
from image_lineage.tracking.downloads import download_version
from image_lineage.tracking.pack_fetch import RANGE_GAP
from image_lineage.tracking.store_gc import collect_garbage, deletion_report


@pytest.fixture
def own_store(monkeypatch) -> str:
    """A store experiment of the test's own: the suite's server holds other tests' packs."""
    name = f"store_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("IMAGE_LINEAGE_STORE_EXPERIMENT", name)
    return name


def log(data: Path, version: str, experiment: str, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data), version=version, experiment_name=experiment,
                                                   quality_check="off", max_samples_per_class=2, **kwargs))


def grow(data: Path) -> dict[str, set[str]]:
    """v3 = v2 with one photo replaced by another picture and one new photo: the changed files by sha256."""
    shutil.copytree(data / "v2", data / "v3")
    replaced = sorted((data / "v3" / "dog").iterdir())[0]
    write_image(replaced.with_suffix(".png"), seed=random.SystemRandom().randrange(1, 10**9), size=(40, 30))
    replaced.unlink()
    added = write_image(data / "v3" / "cat" / "added.png", seed=random.SystemRandom().randrange(1, 10**9))
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in (replaced.with_suffix(".png"), added)}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_pack_is_the_same_bytes_for_the_same_files_and_refuses_a_changed_one(catsdogs_dir, tmp_path):
    photos = sorted(catsdogs_dir.rglob("*.jpg"))[:12]
    files = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in photos]
    first = write_pack(files + files[:3], tmp_path / "a.pack")  # a file twice is stored once
    copies = tmp_path / "copies"  # another day, another machine: new mtimes, other permissions, other order
    copies.mkdir()
    for photo in photos:
        shutil.copyfile(photo, copies / photo.name)
        os.utime(copies / photo.name, (1_900_000_000.5, 1_900_000_000.5))
        (copies / photo.name).chmod(0o600)
    second = write_pack([(sha, copies / path.name) for sha, path in reversed(files)], tmp_path / "b.pack")
    assert first == second and (tmp_path / "a.pack").read_bytes() == (tmp_path / "b.pack").read_bytes()
    assert first.size == sum(p.stat().st_size for p in photos) == (tmp_path / "a.pack").stat().st_size  # no overhead
    assert PackIndex.from_text(first.to_text()) == PackIndex(  # files by key (the sha256's first 32 hex digits)
        first.sha256, first.size, tuple(PackEntry(file_key(e.sha256), e.offset, e.size) for e in first.entries))
    older = "\n".join([f"image-lineage-pack 1 {first.sha256} {first.size}",  # format 1: whole sha256s, offsets
                       *(f"{e.sha256} {e.offset} {e.size}" for e in first.entries)])
    assert PackIndex.from_text(older) == first
    with open(tmp_path / "a.pack", "rb") as pack:
        read_files(pack, [(entry, [tmp_path / "out" / entry.sha256]) for entry in first.entries], "a")
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "out").iterdir()} == {sha for sha, _ in files}

    changed = tmp_path / "changed.jpg"
    shutil.copyfile(photos[0], changed)
    with open(changed, "ab") as file:
        file.write(b"\0")
    with pytest.raises(LineageError, match="changed.jpg changed while it was stored"):
        write_pack([(files[0][0], changed)], tmp_path / "c.pack")


def test_a_file_whose_key_a_different_stored_file_has_is_refused_not_linked(tmp_path):
    """Indexes keep 128 bits of each sha256: a stored file under the same key but of another size is refused
    before anything is written, naming the file, instead of being linked to the other file's bytes."""
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"new bytes")
    sha256 = hashlib.sha256(photo.read_bytes()).hexdigest()
    other = sha256[:32] + "0" * 32  # the same key, another file
    store = ContentStore(client=None, experiment_id=None)
    store.remember(StoredPack("run0", PackIndex("p" * 64, 12, (PackEntry(file_key(other), 0, 12),))))
    store.readable["p" * 64] = True
    with pytest.raises(LineageError, match=f"x.jpg: the content store holds a file of 12 bytes under this file's key {sha256[:32]}"):
        store.add([(sha256, photo.stat().st_size, photo)])
    assert store.locate(sha256)[1].size == 12 and list(tmp_path.iterdir()) == [photo]  # nothing stored or written


def test_a_new_version_uploads_only_its_changed_files_and_both_come_back_byte_for_byte(
        catsdogs_dir, tmp_path, server_uri, own_store):
    data = build_unique_versions(catsdogs_dir, tmp_path / "data")  # no other test's run holds its digests
    changed = grow(data)
    experiment = f"versions_{uuid.uuid4().hex[:8]}"
    v2, v3 = log(data, "v2", experiment), log(data, "v3", experiment)
    store = ContentStore.open()
    assert len(store.packs) == 2
    packs = {len(p.index.entries): {e.sha256 for e in p.index.entries} for p in store.packs.values()}  # files' keys
    assert packs[2] == {file_key(sha) for sha in changed}
    assert packs[len(v2.manifest.records)] == {file_key(r.sha256) for r in v2.manifest.records}
    # v3's pack: its two changed files, nothing else
    tags = mlflow.get_run(v3.run_id).data.tags
    assert tags[TAG_STORE_PACKS] == ",".join(sorted(sha[:16] for sha in store.packs))  # v3 needs both packs
    assert "store.json.gz" in artifact_paths(v3.run_id) and {"manifest.json", "class_counts.png"} <= set(artifact_paths(v3.run_id))
    for logged, version in ((v2, "v2"), (v3, "v3")):
        restored = image_lineage.download(logged.run_id, tmp_path / f"restored_{version}")
        assert folder_files(restored) == folder_files(data / version)  # every byte, every name
        logged_input = mlflow.get_run(logged.run_id).inputs.dataset_inputs[0].dataset
        assert image_lineage.from_image_folder(restored).digest == logged_input.digest
    again = log(data, "v3", f"versions_other_{uuid.uuid4().hex[:8]}")  # another experiment: nothing new to store
    assert len(ContentStore.open().packs) == 2 and again.snapshot_run_id == v3.run_id
    with pytest.raises(LineageError, match="not an empty folder"):
        download_version(v2.run_id, tmp_path / "restored_v2")


STORE_SCHEMES = {"proxied by the tracking server": "mlflow-artifacts:", "in S3": "s3://", "in GCS": "gs://",
                 "in Azure Blob": "wasbs://"}
STORE_FIXTURES = {"in S3": "s3", "in GCS": "gcs", "in Azure Blob": "azure_blob"}


@pytest.mark.parametrize("artifacts", list(STORE_SCHEMES))
def test_a_version_needing_a_few_files_of_a_pack_fetches_only_their_bytes(artifacts, catsdogs_dir, tmp_path, own_store,
                                                                          monkeypatch, request):
    """A download reads the byte ranges of the files it needs, not whole packs: through a tracking server's
    proxied artifacts (HTTP Range), and from a store whose artifacts go straight to an object store, the store
    experiment's artifact location in a bucket: S3 (GetObject with a Range; moto's S3 on a loopback port),
    Google Cloud Storage (a ranged media download; gcp-storage-emulator) and Azure Blob Storage (download_blob
    with an offset and a length; Azurite)."""
    if artifacts == "proxied by the tracking server":
        request.getfixturevalue("server_uri")
    else:
        store = request.getfixturevalue(STORE_FIXTURES[artifacts])
        request.getfixturevalue("sqlite_uri")
        where = f"{store.bucket}@{store.ACCOUNT}.blob.core.windows.net" if artifacts == "in Azure Blob" else store.bucket
        mlflow.create_experiment(own_store, artifact_location=f"{STORE_SCHEMES[artifacts]}{where}/store")
    photos = sorted(catsdogs_dir.rglob("*.jpg"), key=lambda p: hashlib.sha256(p.read_bytes()).hexdigest())
    data = tmp_path / "data"
    for photo in photos:
        (data / "v1" / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, data / "v1" / photo.parent.name / photo.name)
    # a picture of this test's own: no other test's run holds these versions' digests (a run that did would
    # be linked to, and another test's holder would change). A fixed seed, so its place in the pack (sha256 order),
    # and hence which ranges are joined, is the same on every run; write_image draws 768 pictures at this size
    # (seed mod 768), and no other test's fixed seed falls on 600
    unique = write_image(data / "v1" / "cat" / "unique.png", seed=600)
    few = [photos[0], photos[len(photos) // 3], photos[2 * len(photos) // 3], photos[-1], unique]
    for photo in few:
        (data / "v2" / "any").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, data / "v2" / "any" / photo.name)
    experiment = f"ranges_{uuid.uuid4().hex[:8]}"
    log(data, "v1", experiment)
    logged = log(data, "v2", experiment)  # more than its two samples: its files come from the pack
    (pack,) = ContentStore.open().packs.values()
    assert mlflow.get_run(pack.run_id).info.artifact_uri.startswith(STORE_SCHEMES[artifacts])
    fetched = []
    ranged = _compat.range_reader

    def counting(artifact_uri):  # the ranges the store served (a read it refused, falling back to the whole pack,
        read = ranged(artifact_uri)  # is not counted)
        if read is None:
            return None

        def read_counted(path, first, last):
            data = read(path, first, last)
            fetched.append(len(data))
            return data

        return read_counted

    monkeypatch.setattr(_compat, "range_reader", counting)
    restored = image_lineage.download(logged.run_id, tmp_path / "restored")
    assert folder_files(restored) == folder_files(data / "v2")
    wanted = sum(photo.stat().st_size for photo in few)
    # the five files' bytes, plus under RANGE_GAP for each join of two neighbours into one range; never the
    # whole pack (without ranged reads, nothing is counted here)
    joins = len(few) - len(fetched)
    assert 0 < len(fetched) <= len(few) and wanted <= sum(fetched) <= wanted + joins * RANGE_GAP
    assert sum(fetched) < pack.index.size
    # a pack gone from the bucket: refused naming it, as for a whole-file download
    key = f"store/{pack.run_id}/artifacts/{pack.artifact_path}"
    if artifacts == "in S3":
        store.client().delete_object(Bucket=store.bucket, Key=key)
    elif artifacts == "in GCS":
        store.client().bucket(store.bucket).blob(key).delete()
    elif artifacts == "in Azure Blob":
        store.container_client(store.bucket).delete_blob(key)
    if artifacts != "proxied by the tracking server":
        missing = r"(NoSuchKey|\b404\b|BlobNotFound)"  # S3's, GCS's and Azure's words for it
        with pytest.raises(LineageError, match=f"pack {pack.sha256[:12]} .* cannot be read .*{missing}"):
            image_lineage.download(logged.run_id, tmp_path / "again")


def test_a_damaged_pack_is_refused_naming_the_file(catsdogs_dir, tmp_path, sqlite_uri, own_store):
    data = build_real_versions(catsdogs_dir, tmp_path / "data")
    logged = log(data, "v2", f"damaged_{uuid.uuid4().hex[:8]}")
    (pack,) = ContentStore.open().packs.values()
    folder = _compat.local_artifact_dir(mlflow.get_run(pack.run_id).info.artifact_uri)
    stored = Path(folder) / pack.artifact_path
    entry = pack.index.entries[3]
    damaged = bytearray(stored.read_bytes())
    damaged[entry.offset + entry.size // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    name = next(r.path for r in logged.manifest.records if file_key(r.sha256) == entry.sha256)
    with pytest.raises(LineageError, match=f"{name}: the stored bytes in pack {pack.sha256[:12]}"):
        download_version(logged.run_id, tmp_path / "restored")
    assert not (tmp_path / "restored").exists()  # nothing half-written where the version was asked for
    assert cli_main(["download", "--run-id", logged.run_id, "--destination", str(tmp_path / "cli")]) == 2


def test_orphans_are_listed_and_only_unlisted_packs_are_collected(catsdogs_dir, tmp_path, sqlite_uri, own_store, capsys):
    data = build_real_versions(catsdogs_dir, tmp_path / "data")
    grow(data)
    experiment = f"orphans_{uuid.uuid4().hex[:8]}"
    v2, v3 = log(data, "v2", experiment), log(data, "v3", experiment)
    store = ContentStore.open()
    v3_only = next(sha for sha, p in store.packs.items() if len(p.index.entries) == 2)
    report = deletion_report([v3.run_id])
    assert [u.sha256 for u in report["orphaned"]] == [v3_only]
    assert [u.used_by for u in report["kept"]] == [(v2.run_id,)]
    assert cli_main(["orphans", "--experiment", experiment]) == 0
    assert "orphaned: 2 packs" in capsys.readouterr().out  # the whole experiment: both packs

    mlflow.MlflowClient().delete_run(v3.run_id)
    assert collect_garbage(dry_run=True) == []  # younger than an hour: perhaps a version being logged
    assert [u.sha256 for u in collect_garbage(dry_run=True, min_age_hours=0)] == [v3_only]
    assert cli_main(["gc", "--delete", "--min-age-hours", "0"]) == 0
    assert list(ContentStore.open().packs) == [sha for sha in store.packs if sha != v3_only]
    assert not (Path(_compat.local_artifact_dir(mlflow.get_run(store.packs[v3_only].run_id).info.artifact_uri)) / "pack").exists()
    restored = download_version(v2.run_id, tmp_path / "restored")  # what v2 needs is still there
    assert folder_files(restored) == folder_files(data / "v2")


def test_every_way_a_version_was_stored_downloads_checked(catsdogs_dir, tmp_path, sqlite_uri, own_store):
    data = build_real_versions(catsdogs_dir, tmp_path / "data")
    small = log_folder_version(FolderVersionRequest(data_dir=str(data), version="v2", quality_check="off",
                                                    experiment_name=f"small_{uuid.uuid4().hex[:8]}"))
    assert not any(p.endswith(".gz") for p in artifact_paths(small.run_id))  # its samples are all its files
    assert folder_files(download_version(small.run_id, tmp_path / "from_samples")) == folder_files(data / "v2")

    # a run logged before the content store: one tar archive, its sha256 in a tag
    with tarfile.open(tmp_path / "v2.tar", "w") as archive:
        for path in sorted((data / "v2").rglob("*.jpg")):
            archive.add(path, arcname=path.relative_to(data / "v2").as_posix())
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "v2.tar"), "archive")
        mlflow.set_tags({"dataset.snapshot_uri": f"runs:/{run.info.run_id}/archive/v2.tar",
                         "dataset.archive_sha256": hashlib.sha256((tmp_path / "v2.tar").read_bytes()).hexdigest()})
    assert folder_files(download_version(run.info.run_id, tmp_path / "from_archive")) == folder_files(data / "v2")
    mlflow.MlflowClient().set_tag(run.info.run_id, "dataset.archive_sha256", "0" * 64)
    with pytest.raises(LineageError, match="the archive changed"):
        download_version(run.info.run_id, tmp_path / "from_changed_archive")
