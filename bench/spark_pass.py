"""The image pass on Spark (engine=spark) against the local engine, in one run on this machine.

Builds a folder of 20,000 real photos (../shared/data/catsdogs re-encoded with a unique stamp, as in
bench/folder_logging.py), then reads every file with no record cache, once per engine and pass:

  (a) the light pass (sha256, size, geometry, structure check): what ``log_folder_dataset`` reads with
      ``quality_check=off``;
  (b) the full pass with the perceptual hashes and ORB corners the leakage check needs (the default).

Spark runs in ``local[N]`` mode (N = this machine's cores, 2 here), its session started once before (its start
is printed apart). Each engine's records must be equal, field for field. Printed: both times, the overhead
ratio (spark / local, each engine's best of two interleaved rounds), and records per second per core, from
which docs/spark.md estimates a cluster.

    pip install -e '.[spark]'        # pyspark; Spark needs a Java runtime (Debian: default-jre-headless)
    python bench/spark_pass.py [--images 20000] [--cores 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_PHOTOS, build_folder, timed  # noqa: E402
from image_lineage.data.read import read_images  # noqa: E402


def main() -> None:
    args = parse_args()
    os.environ.setdefault("IMAGE_LINEAGE_SPARK_CONF", f"spark.master=local[{args.cores}],spark.driver.memory=2g")
    folder = Path(args.folder) / f"photos_{args.images}" / "v1"
    if not folder.is_dir():
        timed(f"build {args.images} photos", lambda: build_folder(SHARED_PHOTOS, folder, args.images))
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    print(f"{len(paths)} files, {sum(os.path.getsize(p) for p in paths) / 1e6:.0f} MB, {args.cores} cores")
    from image_lineage.data.spark_pass import spark_session

    timed("spark session start (once)", spark_session)
    timed("spark warm-up job (200 files: Python workers start)",
          lambda: read_images(paths[:200], cache=None, engine="spark"))
    for label, perceptual in (("(a) light pass", False), ("(b) with perceptual hashes", True)):
        rounds = []
        for round_number in range(args.rounds):  # interleaved; each engine's best round counts (JIT, page cache)
            local, local_s = timed(f"{label}, local engine, round {round_number + 1}",
                                   lambda: read_images(paths, cache=None, perceptual=perceptual))
            spark, spark_s = timed(f"{label}, spark local[{args.cores}], round {round_number + 1}",
                                   lambda: read_images(paths, cache=None, perceptual=perceptual, engine="spark"))
            assert spark == local, "the engines disagree"
            rounds.append((local_s, spark_s))
        local_s, spark_s = min(r[0] for r in rounds), min(r[1] for r in rounds)
        print(f"    overhead spark/local {spark_s / local_s:.2f}x; records/s per core: local "
              f"{len(paths) / local_s / args.cores:,.0f}, spark {len(paths) / spark_s / args.cores:,.0f}; "
              f"records equal: yes")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "image_lineage_bench_spark"))
    return parser.parse_args()


if __name__ == "__main__":
    main()
