"""The leakage check's pairs: exact and near-duplicate images, across splits (leakage) and across labels.

Every image of the dataset is listed with its split and label (:class:`SplitImage`); the image pass
gives each one its sha256 and perceptual hashes (:mod:`image_lineage.data.perceptual`) in the read that already
hashes it, cached by sha256, so re-checking an unchanged folder decodes nothing. Pairs are:

* ``exact_duplicate``: the same bytes (sha256) at two paths;
* ``near_duplicate``: different bytes, perceptual distance within the threshold (resized, re-encoded,
  cropped by a few percent, brightened copies); also flipped and quarter-turned copies, through the hashes
  an image would have when flipped or turned (:data:`image_lineage.data.perceptual.TURNS`), tiles of a 2x2
  mosaic, through the hashes of each image's quarters, and copies whose frame moved (cut from one side or
  a corner, pasted on a larger canvas, turned a few degrees), through their local features
  (:mod:`image_lineage.quality.matching`). The pair's ``transform`` says how the second picture is the
  first one: ``flipped``, ``rotated 90``, ``rotated -7`` (degrees clockwise), ``cropped`` (it shows part of
  the first), ``contained`` (the first is inside it), or several joined with "and"; empty for a resized,
  re-encoded or edited copy of the same frame. The ``distance`` of a pair found by its local features is
  still its whole pictures' hash distance, often above the threshold: that is why the hash missed it. A pair
  the hashes alone put more than half the threshold apart is kept only when the two pictures' corners agree,
  where corners can tell (:func:`unconfirmed_pairs`: chance meetings of hashes in large collections);

and a pair is also ``leakage`` when its two images sit in different splits, and a ``label_conflict`` when
they carry different labels (classification) or, for detection, different annotations.

Images with too little in them for a perceptual hash are compared by their bytes only, and listed as set
aside: flat pictures (:data:`image_lineage.data.perceptual.NO_HASH`) and pictures smaller than the hash's
32x32 thumbnail on either side (400 distinct MNIST digits, 28x28, made 417 "near-duplicate" pairs: at that
size the low frequencies are the stroke's rough shape, which most digits of a class share).

Pairs within a threshold are found by multi-index hashing (Norouzi et al.): split the 64 bits into m chunks;
two hashes within ``t`` bits agree within ``t // m`` bits on at least one chunk, so candidates come from looking
up each hash's chunk values with up to ``t // m`` flipped bits in a sorted index, and only candidates are
compared in full, vectorised with numpy (no Python loop over pairs). The chunks are chosen per search by a cost
model (:func:`chunk_widths`): at the threshold of 8, five of 12-13 bits for a few thousand images, three of
21-22 bits from about 50,000 (other thresholds, other choices). A check of 100,000 images compares 800,000
hashes (the whole picture, two centres, four quarters and the turn-free hash): 24.4 s with four chunks of 16 bits
on one thread, each hash a query; 1.2-1.4 s now (Xeon VM, 2 cores), the whole pictures' hashes the only queries
but for the turn-free search (:func:`near_pairs`).

The report a person reads is :mod:`image_lineage.quality.report`; what leakage does, :mod:`image_lineage.quality.gate`.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from image_lineage.data.facts import ImageFacts
from image_lineage.data.kinds.base import SplitImage
from image_lineage.data.keypoints import SIDE, unpack
from image_lineage.data.perceptual import CROPS, HASH_SIZE, HASHES, NO_HASH, TILE_COLUMNS, TURN_COLUMNS, TURN_FREE, TURNS
from image_lineage.data.read import WORKERS, read_images
from image_lineage.quality import matching

LOGGER = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 8  # bits of 64: planted copies of real photos measured 0-6 (one harsh 4-way edit 10), distinct photos 14+
SAME_FRAME_BITS = 2
# A pair that only a quarter or a turned hash links must be within threshold // MULTIPLE_COMPARISONS bits: each
# picture is compared four ways by its quarters and seven by its turns, so unrelated ones meet that many more times
# by chance, while the copies these hashes find measured 0-2 bits (mosaic tiles, flips and quarter turns of the real
# photos). 100,000 distinct synthetic pictures (bench/large_check.py): 23,294 pairs flagged by a quarter or a turn
# within 8 bits; within 4, 487 by a quarter and none by a turn.
MULTIPLE_COMPARISONS = 2
# how far apart in size two pictures' corners are compared: three pyramid levels 1.5x apart (data.keypoints)
CORNER_REACH = 2.25
# The ways to split a hash into chunks (bits of the 64) the search chooses from (see chunk_widths), and what its
# steps cost, measured on 100,000 and 2,000 random hashes (Xeon VM, numpy 2.4): a lookup of one chunk value 11 ns,
# a candidate compared in full 24 ns, a bucket of the index built 9 ns
CHUNKINGS = ((13, 13, 13, 13, 12), (22, 21, 21), (16, 16, 16, 16), (11, 11, 11, 11, 10, 10))
LOOKUP_NS, CANDIDATE_NS, BUCKET_NS = 11, 24, 9
BATCH_ELEMENTS = 1 << 21  # lookups and candidates a batch of queries holds at most (~100 MB of arrays)
SEARCH_THREADS = 4

PAIR_COLUMNS = ["path_a", "path_b", "split_a", "split_b", "label_a", "label_b", "kind", "distance", "leakage",
                "label_conflict", "transform"]

@dataclass
class QualityReport:
    pairs: pd.DataFrame  # PAIR_COLUMNS, one row per flagged pair
    images: int
    threshold: int
    set_aside: list[str] = field(default_factory=list)  # paths compared by bytes only (see the module docstring)

    @property
    def metrics(self) -> dict[str, int]:
        kinds = self.pairs["kind"]
        return {
            "quality/exact_duplicate_pairs": int((kinds == "exact_duplicate").sum()),
            "quality/near_duplicate_pairs": int((kinds == "near_duplicate").sum()),
            "quality/leakage_pairs": int(self.pairs["leakage"].sum()),
            "quality/label_conflicts": int(self.pairs["label_conflict"].sum()),
            "quality/set_aside_images": len(self.set_aside),
        }

    @property
    def status(self) -> str:
        if self.pairs["leakage"].any():
            return "leakage"
        return "duplicates" if len(self.pairs) else "clean"

    def leakage_summary(self) -> str:
        """The leaking pairs in one sentence, the first three named (for the gate and the log)."""
        leaking = self.pairs[self.pairs["leakage"]]
        first = "; ".join(f"{r.path_a} ({r.split_a}) ~ {r.path_b} ({r.split_b}), {r.kind.replace('_', ' ')}"
                          for r in leaking.head(3).itertuples())
        return f"{len(leaking)} image pair(s) leak between splits, e.g. {first}."


def find_pairs(images: list[SplitImage], image_check: str = "structure",
               threshold: int = DEFAULT_THRESHOLD, engine: str = "local") -> QualityReport:
    """Every exact and near-duplicate pair among ``images`` (bad images were left out by the caller); ``engine``
    reads the files the record cache cannot answer (see :func:`image_lineage.data.read.read_images`)."""
    facts = read_images([image.file for image in images], image_check, perceptual=True, engine=engine)
    return pairs_among(images, facts, threshold)


def pairs_among(images: list[SplitImage], facts: list[ImageFacts | str], threshold: int = DEFAULT_THRESHOLD) -> QualityReport:
    """:func:`find_pairs` of images whose facts are read (a string for an image that could not be: left out)."""
    usable = [(image, fact) for image, fact in zip(images, facts) if isinstance(fact, ImageFacts)]
    rows = []
    by_sha = defaultdict(list)
    for position, (_, fact) in enumerate(usable):
        by_sha[fact.sha256].append(position)
    for group in by_sha.values():
        rows.extend(pair_row(usable[a][0], usable[b][0], "exact_duplicate", 0) for i, a in enumerate(group) for b in group[i + 1:])
    hashed = [pair for pair in usable if hashable(pair[1])]
    hashes = np.array([fact.phash for _, fact in hashed], dtype=np.uint64).reshape(-1, HASHES)
    near = near_pairs(hashes, threshold)
    moved, unconfirmed = moved_pairs(hashed, hashes, near, threshold)
    if unconfirmed:
        LOGGER.info("%d pair(s) of pictures whose hashes are %d-%d bits apart left out: their corners do not agree "
                    "(chance meetings of unrelated pictures' hashes)", len(unconfirmed),
                    threshold // MULTIPLE_COMPARISONS + 1, threshold)
    for (a, b), (distance, transform) in sorted({**near, **moved}.items()):
        if hashed[a][1].sha256 != hashed[b][1].sha256 and (a, b) not in unconfirmed:
            rows.append(pair_row(hashed[a][0], hashed[b][0], "near_duplicate", distance, transform))
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    order = pairs.assign(rank=~pairs["leakage"]).sort_values(["rank", "distance", "path_a", "path_b"], kind="stable")
    set_aside = sorted(image.path for image, fact in usable if not hashable(fact))
    return QualityReport(order.drop(columns="rank").reset_index(drop=True), len(usable), threshold, set_aside)


def hashable(fact: ImageFacts) -> bool:
    """Whether a perceptual hash says anything about the picture (see the module docstring)."""
    return tuple(fact.phash) != NO_HASH and min(fact.width, fact.height) >= HASH_SIZE


def pair_row(a: SplitImage, b: SplitImage, kind: str, distance: int, transform: str = "") -> list:
    """One row of PAIR_COLUMNS; ``transform``: how ``b`` is ``a`` (how ``a`` is ``b`` when they swap places)."""
    if (a.split, a.path) > (b.split, b.path):
        a, b = b, a
        transform = matching.inverse(transform)
    if a.annotations is not None and b.annotations is not None:
        # detection: the same bytes must carry the same boxes; a resized copy, at least the same categories
        conflict = a.annotations != b.annotations if kind == "exact_duplicate" else categories(a) != categories(b)
    else:
        conflict = a.label is not None and b.label is not None and a.label != b.label
    return [a.path, b.path, a.split, b.split, a.label, b.label, kind, distance, a.split != b.split, bool(conflict),
            transform]


def categories(image: SplitImage) -> list[str]:
    return sorted(line.split("\t", 1)[0] for line in (image.annotations or "").splitlines())


# ---------------------------------------------------------------- the pair search


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b))


def flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``radius`` bits set (the lookups of one chunk value)."""
    masks = [0] + [sum(1 << b for b in chosen) for r in range(1, radius + 1) for chosen in combinations(range(bits), r)]
    return np.array(masks, dtype=np.int64)


def chunk_widths(queries: int, references: int, threshold: int) -> tuple[int, ...]:
    """Of CHUNKINGS, the one with the least expected work for this search. With m chunks of w bits, each query
    looks up every value within threshold // m bits of its own in each chunk, and each lookup brings
    references / 2^w candidates by chance; the index has 2^w buckets a chunk. Longer chunks mean fewer chance
    candidates but more lookups and a larger index: at 100,000 references and a threshold of 8, three chunks of
    21-22 bits searched 2.5x faster than five of 12-13, which are 10x faster at 2,000."""
    def cost(widths: tuple[int, ...]) -> float:
        radius = threshold // len(widths)
        return sum(queries * lookups(width, radius) * (LOOKUP_NS + CANDIDATE_NS * references / 2**width)
                   + BUCKET_NS * 2**width for width in widths)

    return min(CHUNKINGS, key=cost)


def lookups(width: int, radius: int) -> int:
    """How many values lie within ``radius`` bits of one ``width``-bit value (itself included)."""
    return sum(math.comb(width, r) for r in range(radius + 1))


def pairs_within(queries: np.ndarray, references: np.ndarray, threshold: int, same: bool,
                 batch: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query index, reference index, distance) of every pair within ``threshold`` bits.

    ``same``: queries and references are one set, and each unordered pair of different items is reported
    once (query index < reference index).
    """
    queries, references = np.asarray(queries, dtype=np.uint64), np.asarray(references, dtype=np.uint64)
    widths = chunk_widths(len(queries), len(references), threshold)
    radius = threshold // len(widths)
    indexes = []  # per chunk: (shift, references in key order, bucket sizes, whether occupied, bucket starts, flip
    # masks, width)
    for chunk, width in enumerate(widths):
        shift = np.uint64(sum(widths[:chunk]))
        keys = (references >> shift) & np.uint64((1 << width) - 1)
        counts = np.bincount(keys.astype(np.int64), minlength=1 << width)
        starts = np.cumsum(counts)
        starts -= counts
        masks = flip_masks(width, radius).astype(np.int32)
        indexes.append((shift, key_order(keys), counts, counts > 0, starts, masks, width))
    # batches of queries on threads (numpy's gathers and sums release the GIL), memory bounded: a batch holds at
    # most BATCH_ELEMENTS lookups and expected candidates (a high threshold means many of both), SEARCH_THREADS
    # batches at a time
    per_query = max(lookups(width, radius) * (1 + len(references) / 2**width) for width in widths)
    batch = max(1, min(batch, int(BATCH_ELEMENTS // per_query)))

    def batch_pairs(chunk: int, first: int) -> np.ndarray | None:
        shift, order, counts, occupied, starts, masks, width = indexes[chunk]
        q = queries[first : first + batch]
        # the lookups are most of the search (about 250 a query and chunk at 22 bits): they are
        # int32 and read one byte a bucket (``occupied``, 4 MB at 22 bits, against 32 MB of int64 counts), which
        # halved their time (12.8 -> 6.8 ns a lookup, 100,000 references)
        probes = (((q >> shift) & np.uint64((1 << width) - 1)).astype(np.int32)[:, None] ^ masks[None, :]).ravel()
        hit = np.flatnonzero(occupied[probes])  # the probes whose bucket holds references
        if not len(hit):
            return None
        bucket = probes[hit]
        sizes = counts[bucket]
        ends = np.cumsum(sizes)
        # each candidate's probe (its position in ``hit``), by a cumulative sum over run boundaries: np.repeat
        # with a count per probe did this 3.6 ns a candidate, four times a batch, 42 % of the search
        run = np.zeros(ends[-1], dtype=np.int64)
        run[ends[:-1]] = 1
        run = np.cumsum(run)
        # a candidate's place in ``order``: its bucket's start plus its rank in the bucket (candidate number minus
        # the number before its bucket), the part per probe worked out once per probe, not once per candidate
        query_of = (first + hit // len(masks))[run]
        reference_of = order[(starts[bucket] - ends + sizes)[run] + np.arange(ends[-1])]
        if same:
            keep = query_of < reference_of
            query_of, reference_of = query_of[keep], reference_of[keep]
        distance = hamming(queries[query_of], references[reference_of])
        close = distance <= threshold
        return np.stack([query_of[close], reference_of[close], distance[close]])

    jobs = [(chunk, first) for chunk in range(len(widths)) for first in range(0, len(queries), batch)]
    with ThreadPoolExecutor(SEARCH_THREADS) as pool:
        found = [pairs for pairs in pool.map(lambda job: batch_pairs(*job), jobs) if pairs is not None]
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    pairs = np.concatenate(found, axis=1)
    # a pair found through several chunks once, in (query, reference) order: unique over one int64 code per pair
    # (np.unique over columns sorts them as structured records, 6x slower)
    _, first = np.unique(pairs[0] * len(references) + pairs[1], return_index=True)
    return pairs[0][first], pairs[1][first], pairs[2][first]


def key_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for uint64 keys below 2^32 (at most 2^32 of them): each key and its
    index packed in one uint64 and sorted as numbers, which numpy does with SIMD instructions (9-12 ms for 700,000,
    against 60 ms for the stable argsort)."""
    packed = (keys << np.uint64(32)) | np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)


def near_pairs(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> dict[tuple[int, int], tuple[int, str]]:
    """{(i, j): (distance, transform)} for i < j whose smallest distance is within ``threshold``: whole
    against whole, centre against whole both ways round (a crop of A looks like A's centre; A may also be the
    crop of B), a quarter against whole (a mosaic tile), then flipped or turned copies (:func:`turned_pairs`;
    ``transform``: how j is i, "" when as is); quarters and turns within threshold // MULTIPLE_COMPARISONS.

    ``hashes``: an (n, HASHES) array of :func:`perceptual_hashes` (an (n, 3) one: only whole and centres)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    # one search: every image's whole hash against every image's whole, centre and quarter hashes. The whole
    # hashes are the queries because a search's cost is mostly its queries' lookups (each looks up every chunk
    # value within a few bits of its own): 100,000 queries against 700,000 references instead of the other way
    # round (the same pairs: a distance is symmetric) searched in 1.0-1.3 s instead of 1.65-1.8 s
    columns = TILE_COLUMNS.stop if hashes.shape[1] == HASHES else len(CROPS)
    image_b, reference, distance = pairs_within(hashes[:, 0], hashes[:, :columns].ravel(), threshold, same=False)
    image_a, column = np.divmod(reference, columns)
    other = image_a != image_b
    best: dict[tuple[int, int], tuple[int, str]] = {}
    for a, b, c, d in zip(*(values[other].tolist() for values in (image_a, image_b, column, distance))):
        if c >= len(CROPS) and d > threshold // MULTIPLE_COMPARISONS:
            continue
        transform = "" if c < len(CROPS) else "cropped" if a < b else "contained"  # a's quarter is b: b is cut from a
        key = (min(a, b), max(a, b))
        best[key] = min(best.get(key, (65, "")), (d, transform))
    if hashes.shape[1] == HASHES:
        for key, found in turned_pairs(hashes, threshold).items():
            best[key] = min(best.get(key, (65, "")), found)
    return best


def turned_pairs(hashes: np.ndarray, threshold: int) -> dict[tuple[int, int], tuple[int, str]]:
    """{(i, j): (distance, how j is i)} for flipped and turned copies: candidates whose turn-free hashes are
    within ``threshold // MULTIPLE_COMPARISONS`` (one search), kept when one of i's seven turned hashes is within
    that of j's whole hash (the closest names the move). The turned copies of the real photos measured 0-2 bits
    on both; searching the turn-free hashes within the whole threshold gave 2.7 million candidates and took 11 s
    on 100,000 synthetic pictures of simple shapes (their turn-free hashes crowd together)."""
    bound = threshold // MULTIPLE_COMPARISONS
    first, second, _ = pairs_within(hashes[:, TURN_FREE], hashes[:, TURN_FREE], bound, same=True)
    if not len(first):
        return {}
    distances = hamming(hashes[first, TURN_COLUMNS.start:TURN_COLUMNS.stop], hashes[second, 0][:, None])  # second as first turned
    move = distances.argmin(axis=1)
    distance = distances[np.arange(len(move)), move]
    close = distance <= bound
    names = list(TURNS)
    return {(a, b): (d, names[m]) for a, b, d, m in
            zip(*(values[close].tolist() for values in (first, second, distance, move)))}


def moved_pairs(hashed: list[tuple[SplitImage, ImageFacts]], hashes: np.ndarray,
                near: dict[tuple[int, int], tuple[int, str]],
                threshold: int = DEFAULT_THRESHOLD) -> tuple[dict[tuple[int, int], tuple[int, str]], set[tuple[int, int]]]:
    """({(i, j): (whole-hash distance, how j is i)} of the copies the hashes missed and the local features find
    (:mod:`image_lineage.quality.matching`), and of the ``near`` pairs the hashes found without naming a move
    (a crop of a few percent, a turn of a few degrees) when the features name one; the ``near`` pairs to leave out
    as chance, :func:`unconfirmed_pairs`)."""
    corners = [unpack(fact.keypoints or b"")[1:] for _, fact in hashed]
    # a pair whose whole pictures hash within SAME_FRAME_BITS is the same frame resized or re-encoded (the
    # planted ones: 0-2 bits): nothing to name, and a folder of re-encoded copies holds thousands of such
    # pairs, each a verification; a pair further apart is verified, and named "" when the frame is the same (the
    # same verification says, beyond half the threshold, whether the pair is one picture: unconfirmed_pairs)
    plain = np.array([pair for pair, (_, transform) in near.items() if not transform], dtype=np.int64).reshape(-1, 2)
    apart = hamming(hashes[plain[:, 0], 0], hashes[plain[:, 1], 0]) > SAME_FRAME_BITS
    unnamed = [(int(a), int(b)) for a, b in plain[apart]]
    candidates = [*matching.candidate_pairs(corners, set(near)), *unnamed]

    def verify(pair: tuple[int, int]) -> tuple[str | None, int]:
        (_, fact_a), (_, fact_b) = hashed[pair[0]], hashed[pair[1]]
        return matching.verify(fact_a.keypoints or b"", fact_b.keypoints or b"", (fact_a.width, fact_a.height),
                               (fact_b.width, fact_b.height))

    with ThreadPoolExecutor(WORKERS) as pool:  # OpenCV's matching and RANSAC release the GIL
        verdicts = list(pool.map(verify, candidates, chunksize=16))
    found = {}
    for (a, b), (transform, _) in zip(candidates, verdicts):
        if transform is not None and (transform or (a, b) not in near):
            found[(a, b)] = (near.get((a, b), (int(hamming(hashes[a, 0], hashes[b, 0])), ""))[0], transform)
    return found, unconfirmed_pairs(hashed, corners, near, dict(zip(candidates, verdicts)), threshold)


def unconfirmed_pairs(hashed: list[tuple[SplitImage, ImageFacts]], corners: list[tuple[np.ndarray, np.ndarray]],
                      near: dict[tuple[int, int], tuple[int, str]], verdicts: dict[tuple[int, int], tuple[str | None, int]],
                      threshold: int) -> set[tuple[int, int]]:
    """The ``near`` pairs the hashes alone link more than threshold // MULTIPLE_COMPARISONS bits apart whose corners
    do not agree on one move (fewer than MIN_INLIERS of them, ``verdicts`` from :func:`matching.verify`), where
    the corners could tell: each picture has at least MIN_INLIERS of them, at sizes within CORNER_REACH.

    Why: the number of pairs of a collection grows with its square, and so do unrelated pictures whose hashes meet
    by chance, mostly near the threshold (100,000 distinct synthetic pictures, bench/large_check.py: 2,843 whole-
    picture or centre pairs, 2,820 of them 6-8 bits apart, every one with at most 7 agreeing corners). Copies
    that far apart keep their corners: 331 copies of the real photos 5-8 bits from their source (brightened,
    contrast, watermarked, grey, cropped 8 %, halved and brightened) had 22 or more agreeing corners, or were
    thumbnails too small for the corners to compare (12, kept as the hashes say); the grey copy of a dog in the
    real photos (6 bits) too. Nearer pairs are not asked: the hashes alone are trusted there."""
    bound = threshold // MULTIPLE_COMPARISONS
    unconfirmed = set()
    for pair, (distance, transform) in near.items():
        if transform or distance <= bound or pair not in verdicts:
            continue
        named, agreeing = verdicts[pair]
        if named is None and agreeing < matching.MIN_INLIERS and corners_reach(*(hashed[i][1] for i in pair),
                                                                             *(len(corners[i][0]) for i in pair)):
            unconfirmed.add(pair)
    return unconfirmed


def corners_reach(fact_a: ImageFacts, fact_b: ImageFacts, count_a: int, count_b: int) -> bool:
    """Whether the corners of two pictures can say they are one: enough corners on each, and sizes (as the corners
    were found: at most SIDE pixels on the long side) within CORNER_REACH of each other."""
    if min(count_a, count_b) < matching.MIN_INLIERS:
        return False
    side_a, side_b = (min(max(fact.width, fact.height), SIDE) for fact in (fact_a, fact_b))
    return max(side_a, side_b) <= CORNER_REACH * min(side_a, side_b)
