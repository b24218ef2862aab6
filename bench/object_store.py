"""Logging a dataset that lives in S3: our mirror (parallel, streamed, one read per ETag) vs one-by-one downloads.

Builds a version folder of ``--images`` real photos (../shared/data/catsdogs, each re-encoded with a unique
stamp), uploads it to a loopback S3-compatible server (moto's standalone server, in its own process, its
request log counting the object GETs), starts a local ``mlflow server``, and times in this one run:

  (a) cold log: ``log_folder_dataset -P data_dir=s3://bench/cats`` with empty caches (files uploaded);
  (b) warm re-log of the unchanged prefix (goal: >= 20x faster than (a), and 0 object GETs at the server);
  (c) the baseline: download every object one by one with boto3 (``download_file``), then log the local
      folder (empty caches, files uploaded as in (a)); goal: (c) / (a) >= 3;
  (d) the prefix logged as a user runs it (``image-lineage log-folder-dataset``, its own process, the leakage
      check on, empty caches): its peak memory (the process's peak RSS) and peak extra disk (its cache folder
      and its temporary folder, sampled every 50 ms), against the prefix's size; and its digest against the
      local folder's. Goals: disk < 50 MB, memory < 500 MB, same digest.

    python bench/object_store.py [--images 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_PHOTOS, build_folder, timed  # noqa: E402
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.connection import configure_tracking
from tests.support.local_server import LocalServer, free_port

BUCKET = "bench"
OBJECT_GET = re.compile(rf'"GET /{BUCKET}/\S+ HTTP')


class MotoProcess:
    """``python -m moto.server`` on a loopback port, its request log in a file."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.log = folder / "moto.log"
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                import urllib.request
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto server did not start: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=20)

    def object_gets(self) -> int:
        return len(OBJECT_GET.findall(self.log.read_text()))


def fresh_caches() -> None:
    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_s3_cache_")  # hashes and the S3 mirror


def log(data_dir: str, experiment: str, snapshot: str = "reuse"):
    return log_folder_version(FolderVersionRequest(data_dir=data_dir, version="v1", experiment_name=experiment,
                                                   quality_check="off", snapshot=snapshot))


def download_one_by_one(client, target: Path) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="cats/"):
        for item in page.get("Contents", []):
            path = target / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(BUCKET, item["Key"], str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import boto3
    from botocore.config import Config

    with tempfile.TemporaryDirectory(prefix="bench_s3_") as tmp:
        tmp = Path(tmp)
        version = tmp / "photos" / "v1"
        size = build_folder(SHARED_PHOTOS, version, args.images)
        with MotoProcess(tmp) as moto, LocalServer(tmp / "server", workers=None) as server:
            os.environ.update(AWS_ENDPOINT_URL=moto.endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                              AWS_DEFAULT_REGION="us-east-1")
            client = boto3.session.Session().client("s3", endpoint_url=moto.endpoint,
                                                     config=Config(max_pool_connections=16))
            client.create_bucket(Bucket=BUCKET)
            files = sorted(p for p in version.rglob("*.jpg"))
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda p: client.upload_file(str(p), BUCKET, f"cats/v1/{p.relative_to(version).as_posix()}"),
                              files))
            print(f"{len(files)} photos, {size / 1e6:.1f} MB, in s3://{BUCKET}/cats/v1", flush=True)
            configure_tracking(server.uri)
            mlflow.set_tracking_uri(server.uri)
            experiment = f"bench_s3_{uuid.uuid4().hex[:6]}"

            fresh_caches()
            gets = moto.object_gets()
            cold_run, cold = timed("(a) cold log from s3://", lambda: log(f"s3://{BUCKET}/cats", experiment, "copy"))
            print(f"    object GETs: {moto.object_gets() - gets}")
            gets = moto.object_gets()
            warm_run, warm = timed("(b) re-log, prefix unchanged", lambda: log(f"s3://{BUCKET}/cats", experiment))
            warm_gets = moto.object_gets() - gets
            print(f"    object GETs: {warm_gets} (goal 0); same digest: {warm_run.digest == cold_run.digest}")

            fresh_caches()
            local = tmp / "downloaded"
            _, download = timed("(c) boto3 download_file one by one", lambda: download_one_by_one(client, local))
            local_run, local_log = timed("(c) then log the local folder", lambda: log(str(local / "cats"), experiment, "copy"))
            baseline = download + local_log
            print(f"    local digest equals the s3 digest: {local_run.digest == cold_run.digest}")
            print(f"ratio (a)/(b): {cold / warm:.1f}x (goal >= 20), {warm_gets} GETs on the re-log")
            print(f"ratio (c)/(a): {baseline / cold:.2f}x (goal >= 3): {baseline:.2f} s vs {cold:.2f} s")
            streamed_footprint(tmp, server.uri, size, local_run.digest)


def streamed_footprint(tmp: Path, server_uri: str, prefix_bytes: int, local_digest: str) -> None:
    """(d): one cold log of the prefix in a process of its own; its peak RSS and extra disk."""
    import resource
    import shutil
    import threading

    cache, scratch = tmp / "d_cache", tmp / "d_tmp"
    scratch.mkdir()
    env = {**os.environ, "IMAGE_LINEAGE_CACHE_DIR": str(cache), "TMPDIR": str(scratch), "MLFLOW_TRACKING_URI": server_uri}
    peak, done = [0], threading.Event()

    def sample_disk():
        while not done.wait(0.05):
            peak[0] = max(peak[0], sum(folder_bytes(folder) for folder in (cache, scratch)))

    sampler = threading.Thread(target=sample_disk, daemon=True)
    sampler.start()
    experiment = f"bench_s3_d_{uuid.uuid4().hex[:6]}"
    command = [shutil.which("image-lineage") or "image-lineage", "log-folder-dataset", "--data-dir", f"s3://{BUCKET}/cats",
               "--version", "v1", "--experiment-name", experiment]
    _, seconds = timed("(d) image-lineage log-folder-dataset s3:// (check on)",
                       lambda: subprocess.run(command, env=env, check=True, capture_output=True))
    done.set()
    sampler.join()
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    (run,) = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    print(f"    peak extra disk {peak[0] / 1e6:.1f} MB (goal < 50; the prefix is {prefix_bytes / 1e6:.1f} MB), "
          f"peak memory {peak_rss / 1e6:.0f} MB (goal < 500), digest equals the local folder's: "
          f"{run.data.tags['dataset.digest'] == local_digest}")


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512  # bytes on disk (sparse files count less)
            except OSError:
                pass  # gone meanwhile
    return total


if __name__ == "__main__":
    main()
