"""Leakage check speed and accuracy, in one run:

  (a) perceptual hashes per second on 2,000 real photos (re-encoded copies of ../shared/data/catsdogs, as in
      bench/folder_logging.py): ours (the pHashes and ORB corners per image from a DCT-scaled JPEG decode, on
      the image pass's threads) against ``imagehash.phash`` (one pHash from a full decode), cold, same files;
  (b) finding every pair within the threshold among 100,000 64-bit hashes (random, with 1,000 planted
      neighbours at 0..threshold bits), multi-index hashing, against the planted count; then the check's pair
      search over 100,000 distinct images (random hashes and corners): its hash searches (whole picture, two
      centres, four quarters, turn-free: 800,000 hashes looked up) and its corner vote (256 corners an image;
      chance meetings of keys and the sorts, no true votes), timed twice: a first call in a process also pays for
      its new memory;
  (c) the whole check (read, hash, pairs, report) of a 2,000-image folder, cold and warm (cached hashes);
  (d) accuracy on the real photos: planted copies (bench/common.py TRANSFORMS, TURN_TRANSFORMS and
      MOVED_TRANSFORMS) found and named, distinct photos flagged, and the distances of planted and of
      distinct pairs (the distance of a copy found by its local features is its whole-picture hash distance).

    pip install -e '.[bench]'    # imagehash, the baseline
    python bench/near_duplicates.py [--images 2000] [--hashes 100000] [--photos catsdogs|coco]

``--photos coco``: (a) and (c) on 2,000 re-encoded copies of the 160 COCO photos (640 px) instead of the cat and
dog photos (256 px); imagehash decodes every pixel, our pass decodes at the scale it needs.

Goals: (a) and (c) >= 3x imagehash.phash; (b) the pair search over 100,000 images <= 5 s; (d) recall >= 0.95
for each transformation, at most one distinct pair flagged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (MOVED_TRANSFORMS, SHARED_DATA, SHARED_PHOTOS, TRANSFORMS, TURN_TRANSFORMS,  # noqa: E402
                          build_folder, build_leaky_splits, same_picture, timed)
from image_lineage.data.facts import ImageFacts
from image_lineage.data.keypoints import DESCRIPTOR_BYTES, FEATURES, LEVELS
from image_lineage.data.kinds.base import LoadOptions
from image_lineage.data.perceptual import CROPS, TILES
from image_lineage.data.read import read_images
from image_lineage.flows.ingest import read_source
from image_lineage.quality.matching import candidate_pairs, key_bits
from image_lineage.quality.pairs import DEFAULT_THRESHOLD, HASHES, find_pairs, hashable, near_pairs, pairs_within


def hash_speed(files: list[str]) -> float:
    """Print both speeds; return imagehash's seconds."""
    try:
        import imagehash
        from PIL import Image
    except ImportError:
        sys.exit("imagehash is the baseline: pip install -e '.[bench]'")

    def baseline():
        for file in files:
            with Image.open(file) as image:
                imagehash.phash(image)

    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = "off"
    _, theirs = timed(f"(a) imagehash.phash, {len(files)} photos", baseline)
    _, ours = timed("(a) ours: image pass with hashes and ORB corners",
                    lambda: read_images(files, "structure", cache=False, perceptual=True))
    print(f"    {len(files) / theirs:.0f} vs {len(files) / ours:.0f} images/s: ratio = {theirs / ours:.1f}   (goal >= 3)")
    return theirs


def huge_pages() -> str:
    """The settings that decide what this process pays to touch new memory for the first time: the kernel's
    transparent huge pages (``enabled``, and ``defrag``: "madvise" reclaims and compacts memory at a fault in
    regions that ask for them) and numpy's asking for them on large arrays (``NUMPY_MADVISE_HUGEPAGE``, read when
    numpy is imported)."""
    def chosen(name: str) -> str:
        try:
            text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text()
        except OSError:
            return "unknown"
        return text.split("[", 1)[-1].split("]", 1)[0] if "[" in text else text.strip()

    asked = os.environ.get("NUMPY_MADVISE_HUGEPAGE", "unset: numpy asks for them")
    return f"transparent huge pages {chosen('enabled')}, defrag {chosen('defrag')}; NUMPY_MADVISE_HUGEPAGE {asked}"


def pair_speed(count: int, threshold: int) -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, np.iinfo(np.int64).max, size=count, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    hashes |= rng.integers(0, 2, size=count).astype(np.uint64)
    planted = min(1000, count // 2)
    for i in range(planted):  # hash 2i+1 is hash 2i with up to `threshold` bits flipped
        flips = rng.choice(64, size=i % (threshold + 1), replace=False)
        hashes[2 * i + 1] = hashes[2 * i] ^ np.uint64(sum(1 << int(f) for f in flips))
    (a, b, _), seconds = timed(f"(b) all pairs within {threshold} bits among {count:,} hashes",
                               lambda: pairs_within(hashes, hashes, threshold, same=True))
    found = {(int(x), int(y)) for x, y in zip(a, b)}
    print(f"    {len(found)} pairs, {sum((2 * i, 2 * i + 1) in found for i in range(planted))}/{planted} planted found")
    every_hash = rng.integers(0, np.iinfo(np.int64).max, size=(count, HASHES), dtype=np.int64).astype(np.uint64) << np.uint64(1)
    every_hash |= rng.integers(0, 2, size=(count, HASHES)).astype(np.uint64)
    looked_up = count * (len(CROPS) + len(TILES) + 1)  # whole and centres, quarters, the turn-free hash
    near, searches = timed(f"(b) the check's hash searches over {count:,} images ({looked_up:,} hashes)",
                           lambda: near_pairs(every_hash, threshold))
    descriptors = rng.integers(0, 256, size=(count * FEATURES, DESCRIPTOR_BYTES), dtype=np.uint8)
    # uint8 as the check's poses are (int64 ones held 0.4 GB more while the vote ran)
    poses = np.column_stack([rng.integers(0, 256, count * FEATURES, dtype=np.uint8),
                             rng.integers(0, LEVELS, count * FEATURES, dtype=np.uint8)])
    corner_sets = list(zip(np.split(descriptors, count), np.split(poses, count)))
    candidates, vote = timed(f"(b) its corner vote, {FEATURES} random corners an image ({key_bits(count * FEATURES)}-bit keys)",
                             lambda: candidate_pairs(corner_sets))
    # the same vote again: the first call's arrays (about 1.7 GB) are new memory to the process, and where the
    # machine's own memory is handed out lazily (a VM) the first touch of it can cost seconds; how much also
    # depends on huge pages (printed below: docs/entry-points.md, "Huge pages on a VM")
    _, again = timed("(b) the same vote again, in this process", lambda: candidate_pairs(corner_sets))
    print(f"    {len(near)} hash pairs, {len(candidates)} vote candidates (random: chance only); the pair search "
          f"{searches + vote:.2f} s, {searches + again:.2f} s with the vote's second call   (goal <= 5 s)")
    print(f"    memory: {huge_pages()}")


def check_speed(folder: Path, baseline_seconds: float) -> None:
    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_cache_")

    def check():
        return find_pairs(read_source(str(folder), options=LoadOptions(perceptual=True)).images)

    report, cold = timed(f"(c) whole check of the {len(list(folder.rglob('*.jpg'))):,}-image folder, cold", check)
    _, warm = timed("(c) the same, warm (hashes and corners cached)", check)
    print(f"    status {report.status}, {len(report.pairs)} pairs; cold/warm = {cold / warm:.0f}; "
          f"imagehash.phash alone / whole check cold = {baseline_seconds / cold:.1f}   (goal >= 3)")


ALL_TRANSFORMS = (*TRANSFORMS, *TURN_TRANSFORMS, *MOVED_TRANSFORMS)
NAMES = {**{t: TURN_TRANSFORMS[t][0] for t in TURN_TRANSFORMS}, **MOVED_TRANSFORMS, "crop_5pct": "cropped",
         "crop_bright_q40": "cropped"}


def accuracy(root: Path, copies: int, seed: int) -> None:
    planted = build_leaky_splits(root, copies_per_transform=copies, seed=seed, transforms=ALL_TRANSFORMS)
    os.environ["IMAGE_LINEAGE_CACHE_DIR"] = "off"
    images = read_source(str(root), options=LoadOptions(perceptual=True)).images
    report, seconds = timed(f"(d) check of {len(images)} real photos and copies (seed {seed})", lambda: find_pairs(images))
    flagged = {frozenset(p): (d, t) for p, d, t in zip(zip(report.pairs["path_a"], report.pairs["path_b"]),
                                                        report.pairs["distance"], report.pairs["transform"])}
    # the closest distinct pairs' hash distances, for the margin: the hashes' own search (the check would ask the
    # corners of pairs this far apart, and leave most of them out)
    facts = read_images([image.file for image in images], perceptual=True)
    hashed = [(image.path, fact.phash) for image, fact in zip(images, facts) if isinstance(fact, ImageFacts) and hashable(fact)]
    wide = near_pairs(np.array([phash for _, phash in hashed], dtype=np.uint64), 24)
    print(f"    threshold {DEFAULT_THRESHOLD} of 64 bits; a transform is named when its name starts the pair's")
    print(f"    {'transform':<18} planted  found  named  hash distance (max)")
    for transform in ALL_TRANSFORMS:
        pairs = [frozenset(p[:2]) for p in planted if p[2] == transform]
        found = [flagged[p] for p in pairs if p in flagged]
        named = sum(t.startswith(NAMES.get(transform, "")) if transform in NAMES else not t for _, t in found)
        print(f"    {transform:<18} {len(pairs):7d} {len(found):6d} {named:6d}  {max((d for d, _ in found), default=0):5d}")
    planted_pairs = {frozenset(p[:2]) for p in planted}
    others = sorted((d, t, sorted(p)) for p, (d, t) in flagged.items() if p not in planted_pairs)
    same = [(d, t, p) for d, t, p in others if same_picture(*p)]
    distinct = [(d, t, p) for d, t, p in others if not same_picture(*p)]
    recall = sum(p in flagged for p in planted_pairs) / len(planted_pairs)
    print(f"    recall {recall:.3f} (goal >= 0.95 each); distinct pairs flagged: {len(distinct)} (goal <= 1) {distinct}")
    print(f"    other pairs of one picture (real photos a person looked at, mosaics' other tiles): {len(same)}, "
          f"e.g. {same[:3]}")
    closest = sorted((d, sorted((hashed[a][0], hashed[b][0]))) for (a, b), (d, _) in wide.items()
                     if not same_picture(hashed[a][0], hashed[b][0]))
    print(f"    closest distinct pairs by hash: {closest[:5]}")


def photo_source(name: str, tmp: Path) -> Path:
    """A folder of class folders to draw the speed folder from: the cat and dog photos, or the COCO photos as
    one class (links, not copies)."""
    if name == "catsdogs":
        return SHARED_PHOTOS
    scene = tmp / "coco_photos" / "scene"
    scene.mkdir(parents=True)
    for path in sorted((SHARED_DATA / "coco_tiny").glob("*2017/*.jpg")):
        (scene / path.name).symlink_to(path)
    return scene.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--copies", type=int, default=12, help="planted copies per transformation, per seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--photos", choices=("catsdogs", "coco"), default="catsdogs",
                        help="the photos (a) and (c) are drawn from")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_near_") as tmp:
        folder = Path(tmp) / "v1"
        build_folder(photo_source(args.photos, Path(tmp)), folder, args.images)
        files = sorted(str(p) for p in folder.rglob("*.jpg"))
        baseline = hash_speed(files)
        pair_speed(args.hashes, DEFAULT_THRESHOLD)
        check_speed(folder, baseline)
        for seed in range(args.seeds):
            accuracy(Path(tmp) / f"leaky{seed}", args.copies, seed)


if __name__ == "__main__":
    main()
