"""A logged version's files back in a folder, byte for byte, whichever way the run stored them.

* in the content store (``store.json.gz``, one per folder version or COCO split): rebuilt from the packs,
  every file checked against its sha256 (:func:`image_lineage.tracking.content_store.download_from_map`);
* as the run's samples (a version whose classes all fit within ``max_samples_per_class``): downloaded and
  checked against the manifest's sha256s;
* as one archive (runs logged before the content store): its sha256 checked, then unpacked.

A run that links to another run's files (``dataset.snapshot_run_id``) is downloaded through that link. A
mismatch is refused naming the file, and the destination is written only once every file is whole.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_ARCHIVE_SHA256, TAG_SNAPSHOT_URI
from image_lineage.data.packs import PackEntry, file_sha256, read_files
from image_lineage.tracking.content_store import MAP_FORMAT, MAP_NAME
from image_lineage.tracking.pack_fetch import fetch_pack

MANIFESTS = ("manifest.json", "manifest.json.gz")
FETCH_AHEAD = 2  # packs fetched at once


def download_version(run_id: str, destination: str | Path, croissant: bool = False, files: bool = True) -> Path:
    """Rebuild the files of the version run ``run_id`` logged in ``destination`` (new or empty); returns it.
    With ``croissant``, also the version's ``croissant.json`` and the manifests it names, beside the class
    folders, where ``mlcroissant`` reads its records from; without ``files``, only those (a Hugging Face form
    of a hub dataset, or of folders no run stored, has no files in the store)."""
    if not files and not croissant:
        raise LineageError("nothing to download: ask for the files, croissant.json, or both.")
    run = mlflow.get_run(run_id)
    uri = run.data.tags.get(TAG_SNAPSHOT_URI, "")
    if not files:
        destination = require_empty(destination)
        try:
            download_croissant(run_id, uri.removeprefix("runs:/").split("/", 1)[0] if uri.startswith("runs:/") else run_id,
                               destination)
        except (LineageError, MlflowException):
            if not any(destination.iterdir()):
                destination.rmdir()  # nothing written: no empty folder left behind
            raise
        return destination
    if not uri.startswith("runs:/"):
        raise LineageError(f"run {run_id} records no stored dataset files (tag {TAG_SNAPSHOT_URI}): is it a run of "
                           f"log-folder-dataset, log-hf-dataset or coco-finetune? (A Hugging Face form of a hub "
                           f"dataset stores none: download its croissant.json alone.)")
    holder, path = uri.removeprefix("runs:/").split("/", 1)
    destination = require_empty(destination)
    try:
        if run.data.tags.get(TAG_ARCHIVE_SHA256) and path.endswith(".tar"):
            return download_archive(run, uri, holder, destination)
        parts = stored_parts(holder, path)
        if not parts:
            raise LineageError(f"run {run_id}: nothing under {uri} says where its files are (no {MAP_NAME}, no samples "
                               f"with a manifest).")
        base = posixpath.dirname(path) if path.endswith((MAP_NAME, "samples")) else path
        readers = {"map": download_from_map, "samples": download_samples, "files": download_split_files}
        for kind, found in parts:  # COCO and multi-split forms: one part per split, each in <destination>/<split>
            target = destination / posixpath.relpath(posixpath.dirname(found) or ".", base or ".")
            readers[kind](holder, found, target)
        if croissant:
            download_croissant(run_id, holder, destination)
    except MlflowException as exc:
        raise LineageError(f"the stored files of run {run_id} ({uri}) cannot be read ({exc.message}): its snapshot "
                           f"run {holder} may have been deleted. Log the data again, or restore that run.") from exc
    return destination


def download_croissant(run_id: str, holder: str, destination: Path) -> None:
    """``croissant.json``, from the run or, where it linked its reports, from their holder; and each file it
    names that a run holds and the download has not put in place (a version's manifest, a Hugging Face form's
    ``hf/<split>/manifest.json``; COCO annotation files are among the downloaded files already)."""
    client = mlflow.MlflowClient()
    for source in dict.fromkeys((run_id, holder)):
        if "croissant.json" not in {item.path for item in client.list_artifacts(source)}:
            continue
        text = mlflow.artifacts.load_text(f"runs:/{source}/croissant.json")
        named = [item["contentUrl"] for item in json.loads(text)["distribution"]
                 if item["@type"] == "cr:FileObject" and inside(item.get("contentUrl", ""))]
        for path in dict.fromkeys(named):
            if (destination / path).exists():
                continue
            # where a run holds the file: at that path, or (a COCO split's annotation file) under coco/
            found = next(((owner, stored) for owner in dict.fromkeys((source, run_id, holder))
                          for stored in (path, f"coco/{path}") if holds_artifact(client, owner, stored)), None)
            if found is not None:
                local = Path(mlflow.artifacts.download_artifacts(run_id=found[0], artifact_path=found[1],
                                                                 dst_path=str(destination / ".croissant_files")))
                (destination / path).parent.mkdir(parents=True, exist_ok=True)
                local.replace(destination / path)
        shutil.rmtree(destination / ".croissant_files", ignore_errors=True)
        (destination / "croissant.json").write_text(text)
        return
    raise LineageError(f"run {run_id} holds no croissant.json: it was logged before versions had one, or is no "
                       f"log-folder-dataset, log-hf-dataset or coco-finetune run. Log the data again to have one.")


def inside(path: str) -> bool:
    """A relative path that stays inside the destination (a croissant.json is data: ``../x`` is not followed)."""
    if not path or "://" in path or path.startswith("/"):
        return False
    normal = posixpath.normpath(path)
    return normal != ".." and not normal.startswith("../")


def holds_artifact(client: mlflow.MlflowClient, run_id: str, path: str) -> bool:
    return any(item.path == path for item in client.list_artifacts(run_id, posixpath.dirname(path) or None))


def stored_parts(run_id: str, path: str) -> list[tuple[str, str]]:
    """(``map``, ``samples`` or ``files``, artifact path) of each part of a version's files under ``path``."""
    if path.endswith(MAP_NAME):
        return [("map", path)]
    if path.endswith("samples"):
        return [("samples", path)]
    files = [entry.path for entry in walk_artifacts(run_id, path)]
    maps = [f for f in files if posixpath.basename(f) == MAP_NAME]
    mapped = {posixpath.dirname(f) for f in maps}
    samples = sorted({f.split("/samples/")[0] + "/samples" for f in files if "/samples/" in f
                      and f.split("/samples/")[0] not in mapped})
    # a COCO split stored as files: its folder holds the annotation file, images/ and the split's manifest
    with_images = {f.split("/images/")[0] for f in files if "/images/" in f}
    splits = sorted(f for f in files if posixpath.basename(f) in MANIFESTS
                    and posixpath.dirname(f) in with_images - mapped)
    return [("map", f) for f in maps] + [("samples", f) for f in samples] + [("files", f) for f in splits]


def walk_artifacts(run_id: str, path: str):
    client = mlflow.MlflowClient()
    for entry in client.list_artifacts(run_id, path):
        if entry.is_dir:
            yield from walk_artifacts(run_id, entry.path)
        else:
            yield entry


def download_samples(run_id: str, samples: str, destination: Path) -> Path:
    """A version whose samples are all its files: downloaded, each checked against the manifest beside them."""
    client = mlflow.MlflowClient()
    parent = posixpath.dirname(samples)
    listed = {posixpath.basename(e.path) for e in client.list_artifacts(run_id, parent or None)}
    name = next((m for m in MANIFESTS if m in listed), None)
    if name is None:
        raise LineageError(f"runs:/{run_id}/{samples} has no manifest beside it to check its files against.")
    with tempfile.TemporaryDirectory(prefix="image_lineage_samples_", dir=destination.parent) as tmp:
        local = Path(client.download_artifacts(run_id, posixpath.join(parent, name) if parent else name, tmp))
        files = Path(client.download_artifacts(run_id, samples, tmp))
        for name, sha256, _ in read_manifest_records(local):
            path = files / name
            if not path.is_file():
                raise LineageError(f"{name}: listed in the manifest of run {run_id} but not among its samples: "
                                   f"the version's files are incomplete.")
            if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
                raise LineageError(f"{name}: the stored bytes do not match its sha256 {sha256[:12]}... in run "
                                   f"{run_id}'s manifest (the file is damaged).")
        move_into(files, destination)
    return destination


SPLIT_REPORTS = {*MANIFESTS, "class_balance.json", "validation_report.json", "ignored_files.json"}


def download_split_files(run_id: str, manifest: str, destination: Path) -> Path:
    """A COCO split stored as files (its folder: the annotation file, ``images/``, the split's manifest, and the
    run's reports): its annotation file and images, each image checked against the manifest's sha256 and the
    annotation file against ``croissant.json``'s where the run holds one."""
    client = mlflow.MlflowClient()
    folder = posixpath.dirname(manifest)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image_lineage_split_", dir=destination.parent) as tmp:
        local = Path(client.download_artifacts(run_id, folder, tmp))
        for name, sha256, _ in read_manifest_records(local / posixpath.basename(manifest)):
            check_file(local / "images" / name, sha256, f"images/{name}", run_id)
        annotations = [path for path in local.glob("*.json") if path.name not in SPLIT_REPORTS]
        recorded = croissant_sha256s(client, run_id)
        for path in annotations:
            expected = recorded.get(f"{posixpath.basename(folder)}/{path.name}")
            if expected:
                check_file(path, expected, path.name, run_id)
        kept = Path(tmp) / f"files-{uuid.uuid4().hex[:8]}"
        kept.mkdir()
        for path in [*annotations, local / "images"]:
            shutil.move(str(path), str(kept / path.name))
        move_into(kept, destination)
    return destination


def check_file(path: Path, sha256: str, name: str, run_id: str) -> None:
    if not path.is_file():
        raise LineageError(f"{name}: listed in the manifest of run {run_id} but not among its files: the split's "
                           f"files are incomplete.")
    if file_sha256(path) != sha256:
        raise LineageError(f"{name}: the stored bytes do not match its sha256 {sha256[:12]}... recorded in run "
                           f"{run_id} (the file is damaged).")


def croissant_sha256s(client, run_id: str) -> dict[str, str]:
    """{contentUrl: sha256} of the FileObjects the run's croissant.json lists; {} when it has none."""
    if "croissant.json" not in {item.path for item in client.list_artifacts(run_id)}:
        return {}
    metadata = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/croissant.json"))
    return {item["contentUrl"]: item["sha256"] for item in metadata.get("distribution", [])
            if item.get("@type") == "cr:FileObject" and "sha256" in item}


def move_into(folder: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        destination.rmdir()  # empty (checked first)
    shutil.move(str(folder), str(destination))


def download_archive(run: mlflow.entities.Run, uri: str, holder: str, destination: Path) -> Path:
    """A run logged before the content store: its archive, checked against its sha256, unpacked."""
    run_id, expected = run.info.run_id, run.data.tags.get(TAG_ARCHIVE_SHA256)
    with tempfile.TemporaryDirectory(prefix="image_lineage_archive_", dir=destination.parent) as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        actual = file_sha256(local)
        if actual != expected:
            raise LineageError(f"{uri}: sha256 {actual}, but run {run_id} recorded {expected}: the archive changed.")
        unpacked = Path(tmp) / f"files-{uuid.uuid4().hex[:8]}"
        with tarfile.open(local) as archive:
            archive.extractall(unpacked, filter="data")
        move_into(unpacked, destination)
    return destination


# -- from the content store's packs ------------------------------------------------------------------------

def read_map(run_id: str, artifact_path: str) -> tuple[dict, list[tuple[str, str, int, int, int]]]:
    """A version's map and its files: ``(name, sha256, size, pack number, offset)`` each."""
    client = mlflow.MlflowClient()
    with tempfile.TemporaryDirectory(prefix="image_lineage_map_") as tmp:
        local = Path(client.download_artifacts(run_id, artifact_path, tmp))
        version_map = json.loads(gzip.decompress(local.read_bytes()))
        if version_map.get("format") != MAP_FORMAT:
            raise LineageError(f"runs:/{run_id}/{artifact_path} is not a store map this version reads ({MAP_FORMAT}).")
        if "files" in version_map:
            return version_map, [tuple(file) for file in version_map["files"]]
        manifest_path = posixpath.join(posixpath.dirname(artifact_path), version_map["manifest"])
        records = read_manifest_records(Path(client.download_artifacts(run_id, manifest_path, tmp)))
    if len(records) != len(version_map["locations"]):
        raise LineageError(f"runs:/{run_id}/{manifest_path} lists {len(records)} files, its store map "
                           f"{len(version_map['locations'])}: the run's files are damaged.")
    return version_map, [(path, sha256, size, pack, offset)
                         for (path, sha256, size), (pack, offset) in zip(records, version_map["locations"])]


def read_manifest(local: Path) -> dict:
    """A manifest as a run holds it (``manifest.json``, or ``manifest.json.gz`` past 10,000 images)."""
    data = local.read_bytes()
    return json.loads(gzip.decompress(data) if local.name.endswith(".gz") else data)


def read_manifest_records(local: Path) -> list[tuple[str, str, int]]:
    return [(image["path"], image["sha256"], image["size"]) for image in read_manifest(local)["images"]]


def download_from_map(run_id: str, artifact_path: str, destination: str | Path) -> Path:
    """Rebuild a version's folder from its packs: every file checked against its sha256 (a mismatch is
    refused, naming the file), written to a temporary folder renamed to ``destination`` once all are whole."""
    destination = require_empty(destination)
    version_map, files = read_map(run_id, artifact_path)
    partial = destination.parent / f".{destination.name}.partial-{uuid.uuid4().hex[:8]}"
    # targets as strings joined once: pathlib's parsing took 3.5 s of 15 for 100,000 files, on the thread that
    # feeds the writers
    root = os.fspath(partial)
    wanted: dict[int, dict[str, tuple[PackEntry, list[str]]]] = {}
    for name, sha256, size, pack, offset in files:
        entry = wanted.setdefault(pack, {}).setdefault(sha256, (PackEntry(sha256, offset, size), []))
        entry[1].append(f"{root}/{safe_name(name)}")
    client = mlflow.MlflowClient()
    order = sorted(wanted)
    try:
        # the next packs are fetched while this one is written out (the network and the disk work at once)
        with ThreadPoolExecutor(FETCH_AHEAD) as fetcher:
            def fetch(number: int):
                return fetcher.submit(fetch_pack, client, version_map["packs"][number], partial, needed(wanted[number]))

            fetches = {number: fetch(number) for number in order[:FETCH_AHEAD]}
            for position, number in enumerate(order):
                if position + FETCH_AHEAD < len(order):
                    fetches[order[position + FETCH_AHEAD]] = fetch(order[position + FETCH_AHEAD])
                local, temporary = fetches.pop(number).result()
                pack = version_map["packs"][number]
                try:
                    with open(local, "rb") as handle:
                        read_files(handle, wanted[number].values(),
                                   f"{pack['sha256'][:12]} (store run {pack['run_id']})")
                finally:
                    if temporary:
                        os.unlink(local)
        partial.mkdir(parents=True, exist_ok=True)
        if destination.exists():
            destination.rmdir()
        partial.replace(destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        for leftover in destination.parent.glob(f".{partial.name}.pack-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    return destination


def require_empty(destination: str | Path) -> Path:
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise LineageError(f"{destination} is not an empty folder: download a version into a new or empty folder.")
    destination.parent.mkdir(parents=True, exist_ok=True)
    return destination


def safe_name(name: str) -> str:
    """A path the store map names, refused when it would leave the version's folder."""
    if name.startswith("/") or ".." in name.split("/"):
        raise LineageError(f"the store map names {name!r}, outside the version's folder: refused.")
    return name


def needed(entries: dict[str, tuple[PackEntry, list[str]]]) -> list[tuple[int, int]]:
    """(offset, size) of the files a version needs from one pack, in pack order."""
    return sorted((entry.offset, entry.size) for entry, _ in entries.values())
