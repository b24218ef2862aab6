"""Storage that grows with changed files, not with versions: the content store against its goals, and DVC.

Builds (once, cached under ``--workdir``) v1, a folder of ``--images`` real photos from ../shared/data/catsdogs,
each re-encoded with a unique stamp, and ``--versions`` - 1 later versions, each the one before with 1 % of
its photos replaced by new ones and 1 % new photos added (unchanged files are hard links: no extra disk).
Starts a local ``mlflow server`` whose artifacts live on local disk (so the store's size can be measured),
and in this one run:

  (a) cold log of v1 (empty hash cache): seconds, and what the store grew by against the image bytes;
  (b) the log of v2 with v1 stored: seconds, and the bytes uploaded against the bytes of its changed files
      plus its manifest.json;
  (c) the download of v2 into an empty folder (``image-lineage download``): seconds, the digest of the
      folder it rebuilt, against a plain copy of the same packs out of the server's artifact folder;
  (d) v3 .. v<versions>: the artifact store's size against the unique image bytes of all versions;
  (e) DVC on the same v1 and v2 (``dvc add`` + ``dvc push`` to a local remote): seconds and remote bytes;
  (f) ten ``coco_finetune`` runs (epochs=0) on the real COCO subset: the dataset bytes in the store.

    python bench/storage.py [--images 100000] [--versions 10] [--workdir /tmp/image_lineage_bench_storage]

dvc is installed from PyPI into its own venv (``--dvc-venv``, created when missing), never into ours.

Goals: (b) <= 1.1 x (changed files + manifest), <= 10 s; (d) <= 1.05; (a) <= 25 s; (c) digest equal, <= 2 x
the plain copy; (e) ours <= 1.0 x DVC in time and bytes; (f) the images stored once.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DVC_VENV, SHARED_DATA, SHARED_PHOTOS, build_folder, ensure_dvc, timed  # noqa: E402
from image_lineage.data.folders import scan_version  # noqa: E402
from image_lineage.flows.finetune import FinetuneRequest, run_finetune  # noqa: E402
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version  # noqa: E402
from image_lineage.tracking.connection import configure_tracking  # noqa: E402
from image_lineage.tracking.content_store import ContentStore  # noqa: E402
from image_lineage.tracking.downloads import download_version  # noqa: E402
from tests.support.local_server import LocalServer  # noqa: E402

CHANGE = 0.01  # of each version's photos replaced, and as many added
# what DVC's remote holds the equivalent of (the files and a listing of each version): the runs' samples,
# charts and grids are beyond it
DATA_FILES = (".pack", ".idx.gz", "manifest.json", "manifest.json.gz", "store.json.gz")


def folder_bytes(folder: Path, suffixes: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and (not suffixes or p.name.endswith(suffixes)))


def ensure_versions(workdir: Path, count: int, versions: int) -> Path:
    data = workdir / f"photos_{count}"
    if not (data / ".complete").exists():
        print(f"building {count} stamped photos under {data / 'v1'} (once) ...", flush=True)
        build_folder(SHARED_PHOTOS, data / "v1", count)
        (data / ".complete").write_text("ok")
    for number in range(2, versions + 1):
        if not (data / f".complete_v{number}").exists():
            derive_version(data / f"v{number - 1}", data / f"v{number}", count, seed=number)
            (data / f".complete_v{number}").write_text("ok")
    return data


def derive_version(previous: Path, target: Path, count: int, seed: int) -> None:
    """``previous`` with ``CHANGE`` of its photos replaced and as many added, each a new stamped picture."""
    print(f"building {target.name} from {previous.name} (once) ...", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["cp", "-al", str(previous), str(target)], check=True)  # hard links: unchanged files cost nothing
    files = sorted(p for p in target.rglob("*.jpg"))
    changes = int(count * CHANGE)
    replaced = files[seed::max(1, len(files) // changes)][:changes]
    sources = sorted(SHARED_PHOTOS.rglob("*.jpg"))

    def write(job):
        number, path = job
        with Image.open(sources[number % len(sources)]) as image:
            image = image.convert("RGB")
        for bit in range(32):  # a stamp no other version's photo has (two rows: seed and number)
            image.putpixel((bit, 1), (255, 255, 255) if (seed << 20 | number) >> bit & 1 else (0, 0, 0))
        if path.exists():
            path.unlink()  # a hard link: the earlier version keeps its file
        image.save(path, quality=90)

    added = [target / path.parent.name / f"new_{seed:02d}_{n:05d}.jpg" for n, path in enumerate(replaced)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, enumerate(replaced + added)))


def log(data: Path, version: str, experiment: str):
    return log_folder_version(FolderVersionRequest(data_dir=str(data), version=version, experiment_name=experiment,
                                                   quality_check="off"))


def bench_versions(data: Path, store: Path, versions: int) -> dict:
    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_storage_cache_")  # cold: nothing hashed
    experiment = f"storage_{uuid.uuid4().hex[:6]}"
    v1_bytes = folder_bytes(data / "v1")
    first, cold = timed("(a) cold log of v1", lambda: log(data, "v1", experiment))
    grown, grown_data = folder_bytes(store), folder_bytes(store, DATA_FILES)
    print(f"    store grew {grown / 1e6:.1f} MB for {v1_bytes / 1e6:.1f} MB of images ({grown / v1_bytes:.4f} x); "
          f"{cold:.2f} s (goal <= 25 s)")

    before, before_data = folder_bytes(store), folder_bytes(store, DATA_FILES)
    second, v2_seconds = timed("(b) log of v2 with v1 stored", lambda: log(data, "v2", experiment))
    uploaded, uploaded_data = folder_bytes(store) - before, folder_bytes(store, DATA_FILES) - before_data
    v1_shas = {r.sha256 for r in first.manifest.records}
    changed = {r.sha256: r.size for r in second.manifest.records if r.sha256 not in v1_shas}
    manifest = len(second.manifest.to_json().encode())
    basis = sum(changed.values()) + manifest
    print(f"    uploaded {uploaded / 1e6:.1f} MB for {len(changed)} changed files ({sum(changed.values()) / 1e6:.1f} MB) "
          f"+ its manifest as JSON ({manifest / 1e6:.1f} MB): {uploaded / basis:.3f} x (goal <= 1.1); {v2_seconds:.2f} s "
          f"(goal <= 10 s)")
    bench_download(second, store, data)

    manifests = [first.manifest, second.manifest]
    for number in range(3, versions + 1):
        manifests.append(timed(f"(d) log of v{number}", lambda n=number: log(data, f"v{n}", experiment))[0].manifest)
    unique = {r.sha256: r.size for m in manifests for r in m.records}
    total = folder_bytes(store)
    print(f"(d) {versions} versions: artifact store {total / 1e6:.1f} MB for {sum(unique.values()) / 1e6:.1f} MB of unique "
          f"images: {total / sum(unique.values()):.4f} x (goal <= 1.05); packs {folder_bytes(store, ('.pack',)) / 1e6:.1f} MB, "
          f"their indexes {folder_bytes(store, ('.idx.gz',)) / 1e6:.1f} MB, manifests "
          f"{folder_bytes(store, ('manifest.json', 'manifest.json.gz')) / 1e6:.1f} MB, store maps "
          f"{folder_bytes(store, ('store.json.gz',)) / 1e6:.1f} MB, samples and the rest "
          f"{(total - folder_bytes(store, DATA_FILES)) / 1e6:.1f} MB")
    return {"v1": cold, "v2": v2_seconds, "v1_bytes": grown, "v2_bytes": uploaded, "v1_data": grown_data,
            "v2_data": uploaded_data}


def bench_download(logged, store: Path, data: Path, rounds: int = 3) -> None:
    """Interleaved rounds (this VM's disk swings by 2-3x from minute to minute): medians."""
    downloads, copies, pack_copies = [], [], []
    wanted = {p.sha256 for p in ContentStore.open().packs.values()}  # v1's and v2's: v2 needs both
    for number in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench_download_", dir=data.parent) as tmp:
            folder, seconds = timed(f"(c) download of v2 into an empty folder, round {number + 1}",
                                    lambda: download_version(logged.run_id, Path(tmp) / "v2"))
            downloads.append(seconds)
            if number == 0:
                digest = scan_version(folder, image_check="none").digest
            copies.append(timed("(c) a plain copy of the same files (cp -r of v2)", lambda: subprocess.run(
                ["cp", "-r", str(data / "v2"), str(Path(tmp) / "copy")], check=True))[1])

            def copy_packs():
                for index, pack in enumerate(p for p in store.rglob("*.pack") if p.stem in wanted):
                    shutil.copyfile(pack, Path(tmp) / f"copy_{index}.pack")

            pack_copies.append(timed("(c) a plain copy of its packs out of the store", copy_packs)[1])
    seconds, files, packs = (statistics.median(x) for x in (downloads, copies, pack_copies))
    print(f"    digest {'equal' if digest == logged.digest else 'DIFFERENT'}; medians: download {seconds:.2f} s, "
          f"copy of the files {files:.2f} s, of the packs {packs:.2f} s; download / copy of the files "
          f"{seconds / files:.2f} x (goal <= 2); / copy of the packs {seconds / packs:.1f} x")


def bench_dvc(data: Path, workdir: Path, ours: dict, venv: Path) -> None:
    dvc = str(ensure_dvc(venv))
    with tempfile.TemporaryDirectory(prefix="bench_dvc_", dir=workdir) as tmp:
        repo, remote = Path(tmp) / "repo", Path(tmp) / "remote"
        repo.mkdir()
        run = lambda *args: subprocess.run([dvc, *args], cwd=repo, check=True, capture_output=True)  # noqa: E731
        run("init", "--no-scm")
        run("remote", "add", "-d", "local", str(remote))
        times = {}
        for version in ("v1", "v2"):
            shutil.rmtree(repo / "photos", ignore_errors=True)
            subprocess.run(["cp", "-al", str(data / version), str(repo / "photos")], check=True)
            before = folder_bytes(remote) if remote.exists() else 0
            _, add = timed(f"(e) dvc add {version}", lambda: run("add", "photos"))
            _, push = timed(f"(e) dvc push {version}", lambda: run("push"))
            times[version] = (add + push, folder_bytes(remote) - before)
        for version in ("v1", "v2"):
            seconds, stored = times[version]
            print(f"    {version}: DVC {seconds:.1f} s, {stored / 1e6:.2f} MB to its remote; ours {ours[version]:.1f} s, "
                  f"{ours[version + '_data'] / 1e6:.2f} MB of packs, indexes, manifest and map "
                  f"({ours[version + '_bytes'] / 1e6:.2f} MB with the run's samples and charts): ratio ours/DVC "
                  f"{ours[version] / seconds:.2f} in time, {ours[version + '_data'] / stored:.4f} in bytes "
                  f"({ours[version + '_bytes'] / stored:.3f} with samples and charts) (goal <= 1.0)")


def bench_coco(store: Path, runs: int) -> None:
    coco = SHARED_DATA / "coco_tiny"
    images = folder_bytes(coco / "train2017") + folder_bytes(coco / "val2017")
    experiment = f"storage_coco_{uuid.uuid4().hex[:6]}"
    before = folder_bytes(store, (".pack", ".jpg"))
    request = dict(data_dir=str(coco), experiment_name=experiment, register_as=f"det_{experiment}", epochs=0,
                   model="fasterrcnn_mobilenet_v3_large_320_fpn", weights=None, image_size=128, previews=1,
                   quality_check="off", image_artifacts_max=10, snapshot="reuse")
    started = time.perf_counter()
    for index in range(runs):
        run_finetune(FinetuneRequest(**{**request, "run_name": f"coco_finetune_{index}"}))
    stored = folder_bytes(store, (".pack", ".jpg")) - before
    print(f"(f) {runs} coco_finetune runs in {time.perf_counter() - started:.1f} s: dataset files in the store "
          f"{stored / 1e6:.2f} MB for {images / 1e6:.2f} MB of images ({stored / images:.2f} copies, previews "
          f"included; {runs} copies before snapshots)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--coco-runs", type=int, default=10)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "image_lineage_bench_storage")
    parser.add_argument("--dvc-venv", type=Path, default=DVC_VENV, help="dvc's own venv (created when missing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = ensure_versions(args.workdir, args.images, args.versions)
    with tempfile.TemporaryDirectory(prefix="bench_storage_server_") as tmp:
        with LocalServer(Path(tmp) / "server", workers=None) as server:
            os.environ["MLFLOW_TRACKING_URI"] = server.uri
            configure_tracking(server.uri)
            mlflow.set_tracking_uri(server.uri)
            store = Path(tmp) / "server" / "artifacts"
            ours = bench_versions(data, store, args.versions)
            bench_dvc(data, args.workdir, ours, args.dvc_venv)
            bench_coco(store, args.coco_runs)


if __name__ == "__main__":
    main()
