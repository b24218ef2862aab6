"""Folder-version logging: our logging vs the homework's one-upload-per-image loop, and our digest vs dvc.

Builds a 2,000-image version folder (real photos from ../shared/data/catsdogs, re-encoded with a unique
stamp so every file differs), starts a local ``mlflow server`` and times, in this one run, each phase
starting on a quiet machine (disk synced, server idle), printing the HTTP requests each phase sent, with
their mean latency:

  (a) the homework loop: one ``mlflow.log_artifact`` per image, plus its params and metrics;
  (b) ``log_folder_version``, first time (samples + one archive + manifest, diff, chart, dataset input), with the
      leakage check on (the default); and (b') the same with ``quality_check=off``, on a second folder of as many
      photos stamped apart from the first (so none of its files is stored yet): what the check costs a first log;
  (c) ``log_folder_version`` again on the unchanged folder (idempotent re-log), 9 times, the median;
  (d) our digest alone (``scan_version``) against ``dvc add --no-commit`` on the same folder, with
      ``image_check=structure`` (the default: every file checked whole while it is hashed) and ``none``
      (header only), each the best of 3 cold scans; and ``decode`` (every image decoded) in images/s.

dvc is installed from PyPI into its own venv (``--dvc-venv``, created when missing), never into ours.

    python bench/folder_logging.py [--images 2000] [--dvc-venv ~/.cache/image_lineage/dvc-venv]

Goals: a/b >= 5, a/c >= 100, digest >= 3x faster than dvc, structure at most 5% slower than none (a/b' is
printed beside a/b, not a goal).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import DVC_VENV, SHARED_PHOTOS, RequestCounter, build_folder, ensure_dvc, wait_until_idle  # noqa: E402
from image_lineage.data.folders import scan_version
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking._quick_ack import quick_acks  # noqa: E402
from image_lineage.tracking.connection import configure_tracking
from tests.support.local_server import LocalServer

def homework_loop(version_dir: Path, experiment: str) -> None:
    """What the assignment's notebook does: every image uploaded on its own."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="homework_loop"):
        mlflow.log_params({"dataset_version": "1.0.0", "dataset_name": "bench"})
        counts = {}
        for class_dir in sorted(p for p in version_dir.iterdir() if p.is_dir()):
            images = sorted(class_dir.iterdir())
            counts[class_dir.name] = len(images)
            for image in images:
                mlflow.log_artifact(str(image), artifact_path=f"images/{class_dir.name}")
        mlflow.log_metric("total_images", sum(counts.values()))
        for name, count in counts.items():
            mlflow.log_metric(f"class_{name}_count", count)


def ours(data_dir: Path, experiment: str, quality_check: str = "on") -> None:
    log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version="v1", experiment_name=experiment,
                                            quality_check=quality_check))


def quiet(server: LocalServer) -> float:
    """Start each phase on a quiet machine: the writes of the phase before on disk (the server's sqlite
    commits wait on the disk's queue otherwise), the server idle. Returns the seconds waited."""
    os.sync()
    return wait_until_idle(server.process.pid)


def timed(label: str, work) -> float:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    print(f"{label:<48} {seconds:8.2f} s", flush=True)
    return seconds


def dvc_add_seconds(dvc: Path, repo: Path, folder: str) -> tuple[float, float]:
    """(seconds for ``dvc add --no-commit folder``, seconds for ``dvc --version``: its start-up alone)."""
    subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=repo, check=True)
    started = time.perf_counter()
    subprocess.run([str(dvc), "--version"], cwd=repo, check=True, capture_output=True)
    startup = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run([str(dvc), "add", "--no-commit", "-q", folder], cwd=repo, check=True)
    return time.perf_counter() - started, startup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--relogs", type=int, default=9, help="unchanged re-logs timed (the ratio uses their median)")
    parser.add_argument("--photos", type=Path, default=SHARED_PHOTOS)
    parser.add_argument("--dvc-venv", type=Path, default=DVC_VENV)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench_folder_") as tmp:
        repo = Path(tmp) / "repo"
        version_dir = repo / "data" / "v1"
        total_bytes = build_folder(args.photos, version_dir, args.images)
        unchecked = Path(tmp) / "unchecked"  # (b'): other files, so that its first log stores them all
        build_folder(args.photos, unchecked / "v1", args.images, first=args.images)
        print(f"folder: {args.images} images, {total_bytes / 1e6:.1f} MB", flush=True)
        # digests first, while no server competes for the two cores; both read a warm page cache
        digest, check_none = (min(timed(f"(d) our digest, cold, image_check={check}",
                                        lambda: scan_version(version_dir, use_cache=False, image_check=check))
                                  for _ in range(3)) for check in ("structure", "none"))
        decode = timed("(d) our digest, cold, image_check=decode",
                       lambda: scan_version(version_dir, use_cache=False, image_check="decode"))
        dvc_seconds, dvc_startup = dvc_add_seconds(ensure_dvc(args.dvc_venv), repo, "data/v1")
        print(f"{'(d) dvc add --no-commit':<48} {dvc_seconds:8.2f} s  (of which {dvc_startup:.2f} s is dvc's start-up)")
        requests = RequestCounter()
        # a plain `mlflow server`; quick ACKs as the command line runs its work (the homework loop's too, as before)
        with LocalServer(Path(tmp) / "server", workers=None) as server, quick_acks():
            print(f"server idle after {quiet(server):.0f} s", flush=True)
            configure_tracking(server.uri)
            with requests.phase("(a) homework loop"):
                a = timed("(a) homework loop, one log_artifact per image", lambda: homework_loop(version_dir, "bench_homework"))
            quiet(server)
            with requests.phase("(b) first log"):
                b = timed("(b) log_folder_version, first time", lambda: ours(repo / "data", "bench_ours"))
            quiet(server)
            relogs = []
            for attempt in range(args.relogs):
                with requests.phase(f"(c) re-log {attempt + 1}"):
                    relogs.append(timed(f"(c) log_folder_version, unchanged re-log {attempt + 1}",
                                        lambda: ours(repo / "data", "bench_ours")))
            c = statistics.median(relogs)
            quiet(server)
            with requests.phase("(b') first log, check off"):
                b_off = timed("(b') log_folder_version, first time, check off",
                              lambda: ours(unchecked, "bench_ours_unchecked", quality_check="off"))

    print()
    print(requests.report())
    print()
    print(f"ratio a/b = {a / b:.1f}   (goal >= 5); with the leakage check off, a/b' = {a / b_off:.1f} "
          f"(the first log took {b - b_off:.2f} s more with it)")
    print(f"ratio a/c = {a / c:.1f}   (goal >= 100; c = median of {len(relogs)} re-logs, "
          f"spread {min(relogs):.3f}-{max(relogs):.3f} s)")
    print(f"ratio dvc/ours digest = {dvc_seconds / digest:.1f}   (goal >= 3); "
          f"without dvc's start-up: {(dvc_seconds - dvc_startup) / digest:.1f}")
    print(f"our digest: {args.images / digest:.0f} files/s, {total_bytes / 1e6 / digest:.0f} MB/s (structure check)")
    print(f"structure / none = {digest / check_none:.3f}   (goal <= 1.05); none: {args.images / check_none:.0f} files/s")
    print(f"decode: {args.images / decode:.0f} images/s")


if __name__ == "__main__":
    main()
