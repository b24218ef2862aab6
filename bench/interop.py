"""What the standards cost: DVC's id of a tracked folder, and OpenLineage events, on a 2,000-photo version.

Builds a 2,000-image version folder (real photos from ../shared/data/catsdogs, each re-encoded with a unique
stamp), logs it once into a sqlite store, then times in this one run:

  (a) a re-log of the folder, not DVC-tracked, no OpenLineage transport (the median of 7): the baseline;
  (b) ``dvc add`` of the folder (DVC's own md5 of every file, its start-up included), and our DVC id of the same
      folder (``image_lineage.data.dvc.folder_status``), cold (no md5 known: every file read) and warm (md5s
      cached by sha256: no image read);
  (c) a re-log of the now DVC-tracked folder (the median of 7): the DVC id's cost on a re-log;
  (d) a re-log with an OpenLineage transport configured (a file transport, one event a line; median of 7).

    python bench/interop.py [--images 2000]

Goal (issue 29): nothing configured costs nothing: (a) is the re-log figure of bench/folder_logging.py's (c).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_PHOTOS, build_folder  # noqa: E402


def relog_seconds(data_dir: Path, times: int = 7) -> float:
    """The median time of ``times`` re-logs of version v1 (its files already stored by the first log)."""
    from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version

    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version="v1", experiment_name="interop"))
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def dvc_add_seconds(repo: Path) -> float:
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    started = time.perf_counter()
    subprocess.run([*dvc, "add", "-q", "data/v1"], cwd=repo, check=True)
    return time.perf_counter() - started


def our_dvc_seconds(folder: Path, cache) -> tuple[float, str]:
    from image_lineage.data.folders import scan_version
    from image_lineage.data.dvc import folder_status

    manifest = scan_version(folder)  # the image pass, from the record cache: what a log has in hand
    started = time.perf_counter()
    status = folder_status(folder, lambda: {r.path: r.sha256 for r in manifest.records}, cache)
    return time.perf_counter() - started, status.matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_interop_") as tmp:
        tmp = Path(tmp)
        os.environ.update(IMAGE_LINEAGE_CACHE_DIR=str(tmp / "cache"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                          IMAGE_LINEAGE_RUN_LINKS="off")
        for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
            del os.environ[name]
        repo, folder = tmp / "repo", tmp / "repo" / "data" / "v1"
        size = build_folder(SHARED_PHOTOS, folder, args.images)
        os.chdir(tmp)
        from image_lineage.data.cache import RecordCache

        relog_seconds(repo / "data", times=1)  # the first log: files stored
        plain = relog_seconds(repo / "data")
        print(f"{args.images} photos ({size / 1e6:.1f} MB) in {folder}")
        print(f"(a) re-log, not tracked, no OpenLineage        {plain:8.3f} s")
        dvc_add = dvc_add_seconds(repo)
        print(f"(b) dvc add (DVC's md5s, its start-up incl.)   {dvc_add:8.3f} s")
        cold, matches = our_dvc_seconds(folder, None)
        print(f"    our DVC id, cold (every file read)         {cold:8.3f} s   matches dvc add: {matches}")
        our_dvc_seconds(folder, RecordCache.default())  # fills the md5 cache
        warm, matches = our_dvc_seconds(folder, RecordCache.default())
        print(f"    our DVC id, md5s cached by sha256          {warm:8.3f} s   matches dvc add: {matches}")
        tracked = relog_seconds(repo / "data")
        print(f"(c) re-log, DVC-tracked                        {tracked:8.3f} s")
        os.environ.update(OPENLINEAGE__TRANSPORT__TYPE="file", OPENLINEAGE__TRANSPORT__APPEND="true",
                          OPENLINEAGE__TRANSPORT__LOG_FILE_PATH=str(tmp / "events.jsonl"))
        lineage = relog_seconds(repo / "data")
        events = len((tmp / "events.jsonl").read_text().splitlines())
        print(f"(d) re-log, DVC-tracked, OpenLineage to a file {lineage:8.3f} s   ({events} events for 7 runs)")
        print(f"ratio dvc add / our DVC id: cold {dvc_add / cold:.1f}x, warm {dvc_add / warm:.1f}x; "
              f"re-log tracked / plain {tracked / plain:.2f}, with OpenLineage / plain {lineage / plain:.2f}")


if __name__ == "__main__":
    main()
