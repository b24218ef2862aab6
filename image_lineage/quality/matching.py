"""Copies found by their local features: cut from one side, pasted on a larger canvas, turned a few degrees.

Each image carries up to 256 ORB corners (:mod:`image_lineage.data.keypoints`). Two steps, as image
retrieval does it (Philbin et al. 2007: a cheap vote for candidates, then geometric verification):

1. **Candidates by vote.** Two descriptors of one corner differ in a few of their 256 bits; descriptors of
   unrelated corners in about half. Each of ``TABLES`` lookups keys every descriptor by 24 of its bits (three
   of its bytes): two descriptors of one corner share a key in some table with good odds, unrelated ones
   rarely. Every shared key is a vote for the two images; a key shared by more than ``BUCKET_CAP``
   descriptors says little (plain texture, a border, the commonest corner shapes) and is skipped. Pairs with
   at least ``MIN_VOTES`` votes are candidates: numpy sorts, no Python loop over descriptors. A larger
   collection gets longer keys (:func:`key_bits`, up to 32 bits, the table's fourth byte): with keys of one
   length, chance meetings of unrelated descriptors grow with the square of the number of images.
   ORB's bytes are far from uniform, though its comparisons were chosen to be uncorrelated: among the 123,520
   corners of the real photos and one seed's planted copies a byte carried 3.9-6.5 bits of 8, and in each table
   44-61 % of the corners shared their key with more than BUCKET_CAP others, so about half of the keys cast
   no vote. Over 27 seeds of planted copies (5,508) that left one copy unpicked: a pasted photo whose corners
   agreed (47 of them), of whose 335 keys shared with its source 13 were held by few enough corners to vote.
2. **Verification.** The candidates' descriptors are matched (OpenCV's brute force, each corner's best
   match both ways), and RANSAC fits one move (turn, scale and shift: ``cv2.estimateAffinePartial2D``) to
   the matches. A pair is a copy when at least ``MIN_INLIERS`` corners agree within 1 % of the long side,
   spread over the picture, and they are at least ``MIN_SHARE`` of the corners the two images show of the
   same part of the picture. Of the 36,585 pairs of distinct real photos in ../shared/data, two got that
   far (photos of tabby cats: 14 corners, at most 7 % of those they shared); planted copies, at least 18 %.

The move then names the pair (:func:`describe`): how the second picture is the first, ``rotated 7`` (degrees
clockwise), ``cropped`` (it shows part of the first), ``contained`` (the first is inside it: pasted on a
canvas, a mosaic tile), joined with "and".
"""

from __future__ import annotations

import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from image_lineage.data.keypoints import DESCRIPTOR_BYTES, LEVELS, unpack
from image_lineage.data.perceptual import TURNS
from image_lineage.data.read import usable_cpus

TABLES = 10  # 30 of the descriptor's 32 bytes, three a key
MIN_KEY_BITS = 24
SPARE_KEY_BITS = 5  # a descriptor meets an unrelated one in about 1 table of 32 (see key_bits)
VOTE_THREADS = 2
BUCKET_CAP = 16
MAX_VOTE_BITS = 56  # of 256
ANGLE_BINS = 16
POSE_BINS = ANGLE_BINS * (2 * LEVELS + 1)
MIN_VOTES = 5
MIN_INLIERS = 12
MIN_SHARE = 0.12
MAX_DESCRIPTOR_BITS = 64  # of 256: a closer best match is a corner; farther, two corners that look alike
REPROJECTION = 0.01  # of the long side
SCALES = (0.3, 3.5)  # a copy scaled past these is not verified (a move that squeezes all matches to a point)
TURNED_DEGREES = 2  # a smaller turn is not named
INVERSE_TURNS = {"rotated 90": "rotated 270", "rotated 270": "rotated 90"}
FRAME_KEPT = 0.95  # a picture that shows less of the other than this is a crop (0.8 when turned: corners fall out)


def candidate_pairs(corner_sets: list[tuple[np.ndarray, np.ndarray]],
                    known: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    """(i, j), i < j, of the images with at least MIN_VOTES corners that look alike and agree on a turn and a
    scale (see the module docstring), leaving out ``known``.

    ``corner_sets``: per image, (descriptors, poses) from :func:`image_lineage.data.keypoints.unpack`."""
    images = len(corner_sets)
    counts = np.array([len(descriptors) for descriptors, _ in corner_sets], dtype=np.int64)
    if counts.sum() == 0:
        return []
    ends = np.cumsum(counts)
    # each descriptor's image, looked up for the pairs of each table's buckets: at 100,000 images 0.1 GB, and a
    # gather of 600,000 took 9 ms against 72 ms for a binary search of ``ends`` (searchsorted)
    owner_of = np.repeat(np.arange(images, dtype=np.uint32), counts)
    corner_bits = max(1, int(counts.max() - 1).bit_length())  # a corner's index within its image, in a vote
    if (images * images * POSE_BINS) << corner_bits >= 1 << 64:
        raise ValueError(f"{images:,} images of up to {counts.max():,} corners: a vote does not fit 64 bits")
    descriptors = np.ascontiguousarray(np.concatenate([d for d, _ in corner_sets if len(d)]))
    poses = np.concatenate([p for d, p in corner_sets if len(d)])
    words = descriptors.view(np.uint64)  # four 64-bit words a descriptor, for the Hamming distance
    # pairs already known cast no votes: a folder of re-encoded copies (every corner in a dozen images) made 54
    # million votes for pairs the hashes had found, and 6 s of sorting them
    known_codes = distinct(np.array([min(pair) * images + max(pair) for pair in known], dtype=np.int64))
    bits, positions = key_bits(len(descriptors)), np.arange(len(descriptors), dtype=np.uint32)
    scratch = threading.local()  # each thread's sort buffer, reused by its tables (see key_buckets)

    def table_votes(table: int) -> list[np.ndarray]:
        if not hasattr(scratch, "packed"):
            scratch.packed = np.empty(len(descriptors), dtype=np.uint64)
        _, order, starts, sizes = key_buckets(descriptors, table, bits, positions, scratch.packed)
        small = sizes <= BUCKET_CAP
        votes = []
        for places_a, places_b in bucket_pairs(starts[small], sizes[small]):
            first, second = order[places_a].astype(np.int64), order[places_b].astype(np.int64)
            owner_a, owner_b = owner_of[first].astype(np.int64), owner_of[second].astype(np.int64)
            swap = owner_a > owner_b  # the corner of the lower-numbered image first
            first, second = np.where(swap, second, first), np.where(swap, first, second)
            low = np.minimum(owner_a, owner_b)
            pair = low * images + np.maximum(owner_a, owner_b)
            new = (owner_a != owner_b) & ~contains(known_codes, pair)
            first, second, pair, low = first[new], second[new], pair[new], low[new]
            alike = np.bitwise_count(words[first] ^ words[second]).sum(axis=1) <= MAX_VOTE_BITS
            first, second, pair, low = first[alike], second[alike], pair[alike], low[alike]
            votes.append(pose_votes(first, second, pair, poses, first - (ends[low] - counts[low]), corner_bits))
        return votes

    # tables on threads: numpy's sort and its arithmetic on long arrays release the GIL (100,000 images of random
    # descriptors: 5.3-5.4 s on one thread, 3.2-4.2 s on two, the first call of a process the slower). At most
    # VOTE_THREADS: each holds a table's arrays (about 0.2 GB at 100,000 images), and more were not measured
    with ThreadPoolExecutor(min(TABLES, usable_cpus(), VOTE_THREADS)) as pool:
        votes = [vote for table in pool.map(table_votes, range(TABLES)) for vote in table]
    # a corner of the first image votes once a bin: the distinct votes (one sort of numbers, not of (bin, corner)
    # pairs), then how many a bin has
    if not votes:  # no table had a bucket small enough to vote (every corner in more than BUCKET_CAP images)
        return []
    votes = distinct(np.concatenate(votes))
    if not len(votes):
        return []
    bins = votes >> np.uint64(corner_bits)
    starts = run_starts(bins)
    tally = np.diff(np.append(starts, len(bins)))
    pair_codes = bins[starts][tally >= MIN_VOTES].astype(np.int64) // POSE_BINS
    return sorted((int(code // images), int(code % images)) for code in distinct(pair_codes))


# every two members of a bucket, (i, j) with i < j, ordered by j: a bucket of s members has the first s(s - 1) / 2
PAIR_FIRST, PAIR_SECOND = np.array([(i, j) for j in range(BUCKET_CAP) for i in range(j)], dtype=np.int64).T
PAIRS_A_BATCH = 1 << 20  # about 0.1 GB of arrays a batch and thread (4 million: 0.3 GB more at the peak, no faster)


def bucket_pairs(starts: np.ndarray, sizes: np.ndarray, batch: int = PAIRS_A_BATCH):
    """Every two places of each bucket (``starts``: its first place, ``sizes``: 2 to BUCKET_CAP members), as two
    arrays of places, in batches of about ``batch`` pairs (at most that plus one bucket's).

    Made from the buckets, not by comparing each place with the next 15: on pictures whose corners repeat, 93 % of
    the places are shared and those 15 passes over them were most of the vote."""
    counts = sizes * (sizes - 1) // 2
    firsts = np.cumsum(counts) - counts  # each bucket's first pair, numbering the pairs of all buckets
    cuts = np.searchsorted(firsts, np.arange(batch, counts.sum(), batch)).tolist()
    for low, high in zip([0, *cuts], [*cuts, len(counts)]):
        if low == high:
            continue
        block_counts = counts[low:high]
        block = np.repeat(starts[low:high], block_counts)  # each pair's bucket
        # each pair's number within its bucket: its number over all buckets, less its bucket's first pair's
        rank = np.arange(firsts[low], firsts[low] + len(block)) - np.repeat(firsts[low:high], block_counts)
        yield block + PAIR_FIRST[rank], block + PAIR_SECOND[rank]


def key_bits(descriptors: int) -> int:
    """How many bits key a descriptor in the vote's tables, for a collection of ``descriptors`` corners: at least
    MIN_KEY_BITS, and log2(descriptors) + SPARE_KEY_BITS, so that the odds of a descriptor meeting an unrelated one
    in a table stay about 1 in 2^SPARE_KEY_BITS at any size (at most 32: a table's four bytes). Keys of one
    length make chance meetings grow with the square of the collection: at 100,000 images, 24-bit keys met 1.5
    unrelated descriptors per descriptor and table, and the vote took 129 s."""
    return min(32, max(MIN_KEY_BITS, math.ceil(math.log2(max(descriptors, 1))) + SPARE_KEY_BITS))


def key_buckets(descriptors: np.ndarray, table: int, bits: int, positions: np.ndarray,
                packed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(keys, descriptor indexes, starts, sizes): every descriptor's key in ``table`` and its index, sorted by key
    (and index within a key), and the buckets of descriptors that share a key, each as its first place in that
    order and its number of members (2 or more). A table's key is the ``bits`` low bits of the four bytes from
    byte 3 x table on: at 24 bits its own three bytes, longer keys also some bits of the next table's first byte;
    the keys returned stand for those bits shifted left by 32 - ``bits`` (equal keys stay equal, their order is
    kept). ``positions``: ``np.arange(len(descriptors))`` as uint32 (indexes fit 32 bits: up to 16 million
    images). ``packed``: a uint64 buffer of ``len(descriptors)`` to sort in, overwritten (by default a new one);
    the keys and indexes returned are views of it. A caller sorting several tables passes one: on the VM
    measured, the first write to new memory added 0.45-0.6 s to a table of 25.6 million (the kernel's page
    faults), two to three times its sort.

    Why not ``np.argsort`` of the keys: each key and its index are packed into one uint64 and sorted as numbers,
    which numpy does with SIMD instructions (0.22 s for 25.6 million, against 2.4 s for argsort). Why buckets, not
    the places of the shared keys: where corners repeat (100,000 synthetic pictures of shapes) 93 % of the places
    are shared, 83 % in buckets the vote skips as too large, and copying out those places cost more than the sort
    (and as much memory as the buffer again, new memory each table); the buckets are found the same way (below)."""
    if descriptors.dtype != np.uint8 or descriptors.shape[1:] != (DESCRIPTOR_BYTES,) or not descriptors.flags.c_contiguous:
        raise ValueError(f"descriptors: a C-contiguous (n, {DESCRIPTOR_BYTES}) uint8 array, not {descriptors.dtype} "
                         f"{descriptors.shape}")
    if len(descriptors) >= 1 << 32:
        raise ValueError(f"{len(descriptors):,} descriptors: the vote packs their indexes in 32 bits")
    if positions.dtype != np.uint32 or positions.shape != (len(descriptors),):
        raise ValueError(f"positions: np.arange({len(descriptors)}) as uint32, not {positions.dtype} {positions.shape}")
    # the four bytes from byte 3 x table of every 32-byte descriptor, read as one little-endian uint32 (a strided,
    # unaligned view: no copy of the descriptors)
    window = np.ndarray((len(descriptors),), dtype="<u4", buffer=descriptors, offset=3 * table, strides=(DESCRIPTOR_BYTES,))
    if packed is None:
        packed = np.empty(len(descriptors), dtype=np.uint64)
    halves = packed.view(np.uint32).reshape(-1, 2)  # each number's (low, high) 32 bits: (index, key)
    keys, indexes = (halves[:, 1], halves[:, 0]) if sys.byteorder == "little" else (halves[:, 0], halves[:, 1])
    # each half written as uint32 in place, not a uint64 made and or-ed with the indexes: 0.12 s a table of 25.6
    # million against 0.21 s
    np.left_shift(window, np.uint32(32 - bits), out=keys)  # the key's bits on top
    indexes[:] = positions
    packed.sort()
    # same[p]: place p's key is place p - 1's (False at 0 and at len(keys): no place there). A bucket runs from the
    # place before a rise of ``same`` (False to True) to the place before its next fall, so the places where
    # ``same`` changes are every bucket's first and last place, in turn: one comparison and one flatnonzero whose
    # answer is as long as the buckets, whatever their share of the table. 25.6 million keys, random (1 place in 40
    # shared): 0.043 s, 56 MB; repeating (most places shared): 0.070 s, 126 MB. Two masks combined: 0.059 s and
    # 0.095 s; the shared places listed first: 0.039 s, but 0.204 s and 363 MB where most are shared
    same = np.zeros(len(keys) + 1, dtype=bool)
    np.equal(keys[1:], keys[:-1], out=same[1:-1])
    changes = np.flatnonzero(same[1:] != same[:-1])
    starts = changes[0::2]
    return keys, indexes, starts, changes[1::2] - starts + 1


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for a 1-d integer array, by a sort. Not ``np.unique``: since numpy 2.3 it finds the
    values with a hash table, which took 173 s for 74 million uint64 on the VM measured (0.6 s for a million),
    against 0.9 s for numpy's SIMD sort."""
    values = np.sort(values)
    return values[run_starts(values)]


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values begins in a sorted 1-d array (none in an empty one)."""
    if not len(values):
        return np.empty(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))


def contains(sorted_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Whether each of ``codes`` is in ``sorted_codes`` (sorted, unique). Not ``np.isin``: on 2,000 photos its
    default took 0.25 s more per check (it sorts both sides each call), and its table method allocates one flag per
    possible pair code (10^10 at 100,000 images)."""
    if not len(sorted_codes):
        return np.zeros(len(codes), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, codes), len(sorted_codes) - 1)
    return sorted_codes[at] == codes


def pose_votes(first: np.ndarray, second: np.ndarray, pair: np.ndarray, poses: np.ndarray, corner: np.ndarray,
               corner_bits: int) -> np.ndarray:
    """The votes of alike pairs of corners, as uint64: bin code << ``corner_bits`` | ``corner`` (the first corner's
    index within its image). ``pair``: the images' code, first x images + second; the bin says which two images
    and which move (the turn between the corners' orientations in ANGLE_BINS, voting for the two nearest, and the
    difference of their pyramid levels)."""
    first_poses, second_poses = poses[first].astype(np.int64), poses[second].astype(np.int64)  # uint8 until here
    turn = (second_poses[:, 0] - first_poses[:, 0]) % 256 * ANGLE_BINS / 256
    nearest = np.floor(turn).astype(np.int64)
    other = np.where(turn - nearest >= 0.5, nearest + 1, nearest - 1) % ANGLE_BINS
    level = second_poses[:, 1] - first_poses[:, 1] + LEVELS
    codes = [(pair * ANGLE_BINS + angle) * (2 * LEVELS + 1) + level for angle in (nearest % ANGLE_BINS, other)]
    return (np.concatenate(codes).astype(np.uint64) << np.uint64(corner_bits)) | np.tile(corner, 2).astype(np.uint64)


def verify(a: bytes, b: bytes, size_a: tuple[int, int], size_b: tuple[int, int]) -> tuple[str | None, int]:
    """(how picture b is picture a, :func:`describe`, when their corners agree on one move, else None; how many
    corners agree on the move RANSAC fitted, 0 when none was fitted).

    ``a``, ``b``: packed keypoints; ``size_a``, ``size_b``: the pictures' (width, height) as shown.

    The count alone says whether two pictures the hashes pair are one picture (see
    :func:`image_lineage.quality.pairs.unconfirmed_pairs`): a copy that is not moved, only shrunk and edited, can
    fail the share of the corners both show (copies at half size: 20-30 agreeing of the 200-260 both show; those
    5-8 bits from their source: 22 or more), while the unrelated synthetic pictures whose hashes met by chance had
    at most 7 (two distinct real cats reached 14, but their hashes are 14 bits apart or more)."""
    (points_a, descriptors_a, _), (points_b, descriptors_b, _) = unpack(a), unpack(b)
    if min(len(points_a), len(points_b)) < MIN_INLIERS:
        return None, 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    matches = [m for m in matcher.match(descriptors_a, descriptors_b) if m.distance <= MAX_DESCRIPTOR_BITS]
    if len(matches) < MIN_INLIERS:
        return None, 0
    source = points_a[[m.queryIdx for m in matches]]
    target = points_b[[m.trainIdx for m in matches]]
    move, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION,
                                               maxIters=1000, confidence=0.999)
    if move is None:
        return None, 0
    inliers = inliers.ravel().astype(bool)
    agreeing = int(inliers.sum())
    scale = math.hypot(move[0, 0], move[1, 0])
    if agreeing < MIN_INLIERS or not SCALES[0] < scale < SCALES[1]:
        return None, agreeing
    if min(spread(source[inliers]), spread(target[inliers])) < 0.01:
        return None, agreeing
    frame_a, frame_b = frame(size_a), frame(size_b)
    to_b = np.vstack([move, [0, 0, 1]])
    shown_a = np.count_nonzero(inside(apply(to_b, points_a), frame_b))  # a's corners that b also shows
    shown_b = np.count_nonzero(inside(apply(np.linalg.inv(to_b), points_b), frame_a))
    if agreeing < MIN_SHARE * max(1, min(shown_a, shown_b)):
        return None, agreeing
    return describe(to_b, frame_a, frame_b), agreeing


def describe(to_b: np.ndarray, frame_a: tuple[float, float], frame_b: tuple[float, float]) -> str:
    """How b is a, given the move that takes a's points to b's (3x3, units of each long side)."""
    degrees = round(math.degrees(math.atan2(to_b[1, 0], to_b[0, 0])))
    turned = abs(degrees) >= TURNED_DEGREES
    kept = 0.8 if turned else FRAME_KEPT
    a_in_b = covered(to_b, frame_a, frame_b)  # how much of a's frame b shows
    b_in_a = covered(np.linalg.inv(to_b), frame_b, frame_a)  # how much of b's frame comes from a
    parts = [f"rotated {degrees}"] if turned else []
    if a_in_b < kept:
        parts.append("cropped")
    if b_in_a < kept:
        parts.append("contained")
    return " and ".join(parts)


def inverse(transform: str) -> str:
    """How a is b, when b is a ``transform`` (any name the pair report gives, :data:`TURNS`' included)."""
    if transform in TURNS:  # a quarter turn one way undoes one the other way; the other moves undo themselves
        return INVERSE_TURNS.get(transform, transform)
    opposite = {"cropped": "contained", "contained": "cropped"}
    parts = []
    for part in transform.split(" and ") if transform else []:
        if part.startswith("rotated "):
            part = f"rotated {-int(part.removeprefix('rotated '))}"
        parts.append(opposite.get(part, part))
    return " and ".join(parts)


def frame(size: tuple[int, int]) -> tuple[float, float]:
    """A picture's width and height in units of its long side."""
    return size[0] / max(size), size[1] / max(size)


def apply(move: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ move[:2, :2].T + move[:2, 2]


def inside(points: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    return (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] <= bounds[0]) & (points[:, 1] <= bounds[1])


def covered(move: np.ndarray, source: tuple[float, float], target: tuple[float, float], steps: int = 24) -> float:
    """The share of the ``source`` frame that ``move`` puts inside the ``target`` frame (on a grid)."""
    xs, ys = np.meshgrid((np.arange(steps) + 0.5) / steps * source[0], (np.arange(steps) + 0.5) / steps * source[1])
    return float(inside(apply(move, np.column_stack([xs.ravel(), ys.ravel()])), target).mean())


def spread(points: np.ndarray) -> float:
    """The area of the points' bounding box (units of the long side squared)."""
    return float(np.ptp(points[:, 0]) * np.ptp(points[:, 1])) if len(points) else 0.0
