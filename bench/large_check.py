"""The leakage check on a large collection of distinct pictures: chance pairs, time and memory, in one run.

Draws ``--images`` distinct synthetic pictures (default 100,000: a few random circles and squares on a flat colour
with a little noise, 160 px, JPEG; 1 in 5 under val/, the rest under train/), then times the whole check
(read, hash, pairs) cold and again warm (hashes and corners cached), and prints the pairs it flags by how they
were found, how many cross splits, and the process's peak memory. No two pictures are copies of each other, so
every flagged pair is a chance pair: simple pictures like these are a hard case for perceptual hashes (they
crowd together) and for the corner vote (their corners repeat).

    python bench/large_check.py [--images 100000] [--folder DIR]   # DIR: keep the pictures there (drawn once)

Measured on the Xeon VM (2 cores), this bench on the code before the 2026-12-01 evening changes: 26,137 pairs (8,482
across splits), cold 173.7 s, warm 82.0 s, 9.2 GB peak; after them: 3,330 pairs (1,077), 145.7 s, 46.4 s, 5.7 GB;
after the corner vote's buckets that night: 3,330 pairs (1,077), 139.7 s, 32.1 s, 5.8 GB; on 2026-12-02, with hash
pairs 5-8 bits apart kept only when their corners agree: 510 pairs (164), 150.3 s, 39.1 s, 5.9 GB.
Goals (issue 26's, at this scale): no false pair, the pair search <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import timed  # noqa: E402
from image_lineage.data.kinds.base import LoadOptions  # noqa: E402
from image_lineage.flows.ingest import read_source  # noqa: E402
from image_lineage.quality.pairs import find_pairs  # noqa: E402

SIDE = 160


def draw_picture(root: Path, number: int) -> None:
    """Picture ``number``: its own seed, so a folder drawn again is the same."""
    rng = np.random.default_rng(number)
    folder = root / ("val" if number % 5 == 0 else "train") / ("a" if number % 2 else "b")
    folder.mkdir(parents=True, exist_ok=True)
    picture = np.empty((SIDE, SIDE, 3), np.uint8)
    picture[:] = rng.integers(0, 256, 3)
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, SIDE, 2))
        size = int(rng.integers(5, 40))
        if rng.random() < 0.5:
            cv2.circle(picture, (x, y), size, colour, -1)
        else:
            cv2.rectangle(picture, (x, y), (x + size, y + size), colour, -1)
    picture = cv2.add(picture, rng.integers(0, 30, picture.shape, dtype=np.uint8))
    cv2.imwrite(str(folder / f"{number:06d}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])


def draw_folder(root: Path, images: int) -> None:
    drawn = len(list(root.rglob("*.jpg")))
    if drawn == images:
        return
    if drawn:  # pictures of another run's --images: a check of the folder would count them too
        sys.exit(f"{root} holds {drawn:,} pictures, not {images:,}: give --images {drawn} or an empty --folder")
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:  # OpenCV's drawing and encoding release the GIL
        list(pool.map(lambda number: draw_picture(root, number), range(images)))


def check(root: Path):
    return find_pairs(read_source(str(root), options=LoadOptions(perceptual=True)).images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, help="where to draw (and keep) the pictures; default a temporary one")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_large_") as tmp:
        root = args.folder or Path(tmp) / "pictures"
        timed(f"{args.images:,} synthetic pictures drawn", lambda: draw_folder(root, args.images))
        os.environ["IMAGE_LINEAGE_CACHE_DIR"] = str(Path(tmp) / "cache")
        timed("whole check, cold (every picture read, hashed, its corners found)", lambda: check(root))
        report, _ = timed("the same, warm (hashes and corners cached)", lambda: check(root))
        pairs = report.pairs
        found_by = pairs["transform"].fillna("").replace("", "(the same frame)")
        print(f"    {len(pairs):,} chance pairs (goal 0), {int(pairs['leakage'].sum()):,} across splits; by the move "
              "named (the same frame: whole or centre hashes, or corners agreeing on no move):")
        print("    " + found_by.value_counts().to_string().replace("\n", "\n    "))
        print(f"    peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")


if __name__ == "__main__":
    main()
