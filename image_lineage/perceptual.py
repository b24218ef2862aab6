"""Perceptual hashes of images and the search for near-identical pairs among many of them.

Which hash, and why: pHash (the DCT of a 32x32 grey thumbnail; one bit per low-frequency coefficient,
set when it is above their median). Resizing, re-encoding at a low JPEG quality and brightening leave the
low frequencies almost unchanged (on the real photos in ../shared/data: at most 2, 2 and 8 of 64 bits),
but a crop shifts the whole picture under the grid, and a 5% border crop moved up to 16 bits, as far as
two different photos can be (the closest distinct photos there differ in 14 bits). So each image gets
three pHashes: of the whole picture and of its centre with 5% and 10% cut from every side. A copy cut by
about that much matches the original's centre hash closely (at most 4 bits for a 5% crop), and a pair's
distance is the smallest over whole/whole, centre/whole and whole/centre.

The thumbnail comes from the JPEG decoder's DCT scaling: a 1/2..1/8 scale decode reads the same coefficients
and skips most of the work, and the pHash only needs 32x32 pixels anyway.

Pairs within a threshold are found by multi-index hashing (Norouzi et al.): split the 64 bits into four
16-bit chunks; two hashes within ``t`` bits agree within ``t // 4`` bits on at least one chunk, so
candidates come from looking up each hash's chunk values with up to ``t // 4`` flipped bits in a sorted
index, and only candidates are compared in full, vectorised with numpy (no Python loop over pairs).
"""

from __future__ import annotations

import io
from itertools import combinations

import cv2
import numpy as np
from PIL import Image

HASH_SIZE = 32  # thumbnail side; the low 8x8 DCT coefficients give the 64 bits
CROPS = (0.0, 0.05, 0.10)  # whole picture, then its centre with this fraction cut from every side
DEFAULT_THRESHOLD = 8  # bits of 64: planted copies of real photos measured 0-6 (one harsh 4-way edit 10), distinct photos 14+
CHUNKS = 4
CHUNK_BITS = 64 // CHUNKS


BIT_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
# OpenCV decodes JPEGs at 1/2, 1/4 or 1/8 scale straight to grey (libjpeg-turbo's DCT scaling), and, unlike
# PIL's Python-level parsing, every step here (decode, resize, DCT) runs in C without the GIL, so the image
# pass's threads hash in parallel. Orientation is ignored: the pixels as stored, as everywhere else.
REDUCED_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def perceptual_hashes(data: bytes, size: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(whole, centre 5%, centre 10%) pHashes of an encoded image, each a 64-bit unsigned int.

    ``size`` (width, height, from the header) lets the decoder scale down as far as the hash allows."""
    grey = decode_grey(data, size)
    height, width = grey.shape
    low = np.empty((len(CROPS), 64), dtype=np.float32)
    for row, crop in enumerate(CROPS):
        dy, dx = round(height * crop), round(width * crop)
        region = grey[dy : height - dy or None, dx : width - dx or None]
        thumbnail = cv2.resize(region, (HASH_SIZE, HASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        low[row] = cv2.dct(thumbnail)[:8, :8].ravel()
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)  # the DC term would dominate the median
    return tuple(int(value) for value in (bits.astype(np.uint64) * BIT_WEIGHTS).sum(axis=1))


def decode_grey(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """A grey uint8 array of the picture, at least ``2 * HASH_SIZE`` pixels on its short side when possible."""
    factor = 1
    if size:
        while factor < 8 and min(size) // (factor * 2) >= HASH_SIZE * 2:
            factor *= 2
    grey = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), REDUCED_GREY[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    if grey is None:  # a format this OpenCV build does not read: PIL does
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (HASH_SIZE * 2, HASH_SIZE * 2))
            grey = np.asarray(image.convert("L"))
    return grey


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a, b))


def flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``radius`` bits set (the lookups of one chunk value)."""
    masks = [0] + [sum(1 << b for b in chosen) for r in range(1, radius + 1) for chosen in combinations(range(bits), r)]
    return np.array(masks, dtype=np.int64)


def pairs_within(queries: np.ndarray, references: np.ndarray, threshold: int, same: bool,
                 batch: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query index, reference index, distance) of every pair within ``threshold`` bits.

    ``same``: queries and references are one set, and each unordered pair of different items is reported
    once (query index < reference index).
    """
    queries, references = np.asarray(queries, dtype=np.uint64), np.asarray(references, dtype=np.uint64)
    masks = flip_masks(CHUNK_BITS, threshold // CHUNKS)
    found = []
    for chunk in range(CHUNKS):
        shift = np.uint64(chunk * CHUNK_BITS)
        keys = ((references >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << CHUNK_BITS)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for first in range(0, len(queries), batch):  # bounded memory: candidates of one batch at a time
            q = queries[first : first + batch]
            probes = ((q >> shift) & np.uint64(0xFFFF)).astype(np.int64)[:, None] ^ masks[None, :]
            sizes = counts[probes].ravel()
            if not sizes.sum():
                continue
            query_of = np.repeat(np.repeat(np.arange(first, first + len(q)), len(masks)), sizes)
            run_starts = np.repeat(starts[probes].ravel(), sizes)
            within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            reference_of = order[run_starts + within]
            keep = query_of < reference_of if same else np.ones(len(query_of), dtype=bool)
            query_of, reference_of = query_of[keep], reference_of[keep]
            distance = hamming(queries[query_of], references[reference_of])
            close = distance <= threshold
            found.append(np.stack([query_of[close], reference_of[close], distance[close]]))
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty
    pairs = np.unique(np.concatenate(found, axis=1), axis=1)  # a pair found through several chunks once
    return pairs[0], pairs[1], pairs[2]


def near_pairs(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> dict[tuple[int, int], int]:
    """{(i, j): distance} for i < j whose smallest whole/centre distance is within ``threshold``.

    ``hashes``: an (n, 3) array of :func:`perceptual_hashes`. Centre hashes are compared with whole ones
    both ways round (a crop of A looks like A's centre; A may also be the crop of B)."""
    hashes = np.asarray(hashes, dtype=np.uint64).reshape(-1, len(CROPS))
    whole = hashes[:, 0]
    best: dict[tuple[int, int], int] = {}
    for column in range(len(CROPS)):
        same = column == 0
        for a, b, distance in zip(*pairs_within(hashes[:, column], whole, threshold, same=same)):
            if a == b:
                continue
            key = (int(min(a, b)), int(max(a, b)))
            best[key] = min(best.get(key, 64), int(distance))
    return best
