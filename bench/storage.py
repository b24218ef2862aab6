"""Storage that grows with unique content: snapshots reused across experiments and runs, fast archives.

Builds (once, cached under ``--workdir``) a version folder of ``--images`` real photos from
../shared/data/catsdogs, each re-encoded with a unique stamp, starts a local ``mlflow server`` whose
artifacts live on local disk (so the store's size can be measured), and in this one run:

  (a) cold log of the version into experiment A (empty hash cache): seconds, archive bytes / image bytes;
  (b) the same version into a second experiment B (snapshot=reuse, the default): seconds and image bytes
      uploaded, against (b0) experiment C with ``snapshot=copy``, which is what every new experiment did
      before (re-archive and re-upload);
  (c) the archive alone: ``tarfile`` as before (``add`` per file) vs ``archive.write_archive``, and the
      manifest's JSON (``asdict`` + indented ``json.dumps`` vs ``Manifest.to_json``);
  (d) two archives of the version with every file touched in between (new mtimes, other modes):
      byte-identical or not;
  (e) ten ``coco_finetune`` runs (epochs=0: storage, not training, is measured) on the real COCO subset,
      images archived per split: the bytes of dataset files in the artifact store vs one copy.

    python bench/storage.py [--images 100000] [--workdir /tmp/image_lineage_bench_storage]

Goals: (b) <= 10 s with 0 image bytes uploaded; (a) <= 25 s with archive <= 1.02 x image bytes;
(d) identical; (e) the images stored once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_DATA, SHARED_PHOTOS, build_folder, timed  # noqa: E402
from image_lineage.data.archive import write_archive
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.connection import configure_tracking
from tests.support.local_server import LocalServer


IMAGE_FILES = (".tar", ".jpg")  # dataset files in the store: samples, archives, COCO images


def folder_bytes(folder: Path, suffixes: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and (not suffixes or p.name.endswith(suffixes)))


def ensure_version(workdir: Path, count: int) -> Path:
    data = workdir / f"photos_{count}"
    version = data / "v1"
    if not (data / ".complete").exists():
        print(f"building {count} stamped photos under {version} (once) ...", flush=True)
        build_folder(SHARED_PHOTOS, version, count)
        (data / ".complete").write_text("ok")
    return data


def log(data: Path, experiment: str, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data), version="v1", experiment_name=experiment,
                                                   quality_check="off", **kwargs))


def bench_folder(data: Path, store: Path) -> None:
    images = folder_bytes(data / "v1")
    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_storage_cache_")  # cold: nothing hashed
    suffix = uuid.uuid4().hex[:6]
    before = folder_bytes(store)
    first, cold = timed("(a) cold log into experiment A", lambda: log(data, f"storage_a_{suffix}"))
    archive = folder_bytes(store, (".tar",))
    print(f"    archive {archive / 1e6:.1f} MB for {images / 1e6:.1f} MB of images: {archive / images:.4f} x "
          f"(goal <= 1.02); store grew {(folder_bytes(store) - before) / 1e6:.1f} MB")
    before, before_images = folder_bytes(store), folder_bytes(store, IMAGE_FILES)
    second, reuse = timed("(b) same version, experiment B (reuse)", lambda: log(data, f"storage_b_{suffix}"))
    print(f"    linked to run {second.snapshot_run_id} (holder {first.run_id}); store grew "
          f"{(folder_bytes(store) - before) / 1e3:.1f} KB, of which image bytes "
          f"{folder_bytes(store, IMAGE_FILES) - before_images} (goal 0)")
    before = folder_bytes(store)
    _, copy = timed("(b0) same version, experiment C (snapshot=copy, as before)",
                    lambda: log(data, f"storage_c_{suffix}", snapshot="copy"))
    print(f"    store grew {(folder_bytes(store) - before) / 1e6:.1f} MB")
    print(f"ratio (b0)/(b): {copy / reuse:.1f}x; (b) {reuse:.2f} s (goal <= 10 s); (a) {cold:.2f} s (goal <= 25 s)")
    bench_archive(first.manifest)


def bench_archive(manifest) -> None:
    root = Path(manifest.version_dir)
    members = [(r.path, root / r.path) for r in manifest.records]
    with tempfile.TemporaryDirectory(prefix="bench_archive_") as tmp:
        tmp = Path(tmp)

        def with_tarfile():
            with tarfile.open(tmp / "old.tar", "w", dereference=True) as archive:
                for name, path in members:
                    archive.add(path, arcname=name)

        _, old = timed("(c) tarfile.add per file (before)", with_tarfile)
        first, new = timed("(c) write_archive", lambda: write_archive(members, tmp / "new.tar"))
        print(f"    sizes: tarfile {(tmp / 'old.tar').stat().st_size / 1e6:.1f} MB, ours "
              f"{(tmp / 'new.tar').stat().st_size / 1e6:.1f} MB; ratio {old / new:.1f}x")
        _, old_json = timed("(c) manifest JSON: asdict + json.dumps(indent=1) (before)", lambda: json.dumps(
            {"digest": manifest.digest, "images": [asdict(r) for r in manifest.records]}, indent=1))
        _, new_json = timed("(c) manifest JSON: Manifest.to_json", manifest.to_json)
        print(f"    ratio {old_json / new_json:.1f}x")
        stamp = time.time() + 86400 * 400  # "another day"
        for _, path in members:
            os.utime(path, (stamp, stamp))
            path.chmod(0o640)
        second = write_archive(list(reversed(members)), tmp / "again.tar")
        same = (tmp / "new.tar").read_bytes() == (tmp / "again.tar").read_bytes()
        print(f"(d) archive after touching every file: sha256 {first[:16]} vs {second[:16]}: "
              f"{'byte-identical' if same else 'DIFFERENT'}")


def bench_coco(store: Path, runs: int) -> None:
    coco = SHARED_DATA / "coco_tiny"
    images = folder_bytes(coco / "train2017") + folder_bytes(coco / "val2017")
    experiment = f"storage_coco_{uuid.uuid4().hex[:6]}"
    before = folder_bytes(store, IMAGE_FILES)
    request = dict(data_dir=str(coco), experiment_name=experiment, register_as=f"det_{experiment}", epochs=0,
                   model="fasterrcnn_mobilenet_v3_large_320_fpn", weights=None, image_size=128, previews=1,
                   quality_check="off", image_artifacts_max=10, snapshot="reuse")
    started = time.perf_counter()
    for index in range(runs):
        run_finetune(FinetuneRequest(**{**request, "run_name": f"coco_finetune_{index}"}))
    stored = folder_bytes(store, IMAGE_FILES) - before
    print(f"(e) {runs} coco_finetune runs in {time.perf_counter() - started:.1f} s: dataset files in the store "
          f"{stored / 1e6:.2f} MB for {images / 1e6:.2f} MB of images ({stored / images:.2f} copies; "
          f"{runs} copies before)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--coco-runs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "image_lineage_bench_storage")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = ensure_version(args.workdir, args.images)
    with tempfile.TemporaryDirectory(prefix="bench_storage_server_") as tmp:
        with LocalServer(Path(tmp) / "server", workers=None) as server:
            os.environ["MLFLOW_TRACKING_URI"] = server.uri
            configure_tracking(server.uri)
            mlflow.set_tracking_uri(server.uri)
            store = Path(tmp) / "server" / "artifacts"
            bench_folder(data, store)
            bench_coco(store, args.coco_runs)


if __name__ == "__main__":
    main()
