"""Perceptual hashes of one image: what the image pass computes, from the bytes it already read, for the leakage check.

Which hash, and why: pHash (the DCT of a 32x32 grey thumbnail; one bit per low-frequency coefficient,
set when it is above their median). Resizing, re-encoding at a low JPEG quality and brightening leave the
low frequencies almost unchanged (on the real photos in ../shared/data: at most 2, 2 and 8 of 64 bits),
but a crop shifts the whole picture under the grid, and a 5% border crop moved up to 16 bits, as far as
two different photos can be (the closest distinct photos there differ in 14 bits). So each image gets
three pHashes: of the whole picture and of its centre with 5% and 10% cut from every side. A copy cut by
about that much matches the original's centre hash closely (at most 4 bits for a 5% crop), and a pair's
distance is the smallest over whole/whole, centre/whole and whole/centre.

The grey picture comes from the JPEG decoder's DCT scaling: a 1/2..1/8 scale decode reads the same
coefficients and skips most of the work; it is decoded just large enough for the local features
(``SIDE`` pixels on the long side), and the hashes' 32x32 thumbnails are taken from it.

Mirrored and turned copies. A copy flipped left to right, or turned by 90, 180 or 270 degrees, hashes far from
its source (30 and 28 bits of 64 measured). But the DCT knows these moves exactly: mirroring the thumbnail's
columns negates the coefficients of odd horizontal frequency, mirroring its rows those of odd vertical
frequency, and turning it a quarter transposes the coefficients too. So from the coefficients already computed
each image also gets the seven hashes it *would* have when flipped or turned (``TURNS``); the pair search
compares those with the other images' whole hashes. (Turning a non-square picture and squeezing it into the
32x32 thumbnail commute, so this holds for any aspect ratio.) Searching seven more hashes per image would cost
seven more searches; instead one more hash that no flip or turn changes (``TURN_FREE``: the signs dropped and
the coefficients folded over the diagonal) finds the candidates in one search, and the seven turned hashes
then say, per candidate, whether and how it is a flipped or turned copy.

Tiles of a mosaic. A photo that became one quarter of a 2x2 mosaic hashes far from it as a whole; each image
therefore also gets the hashes of its four quarters (``TILES``), and the pair search compares them with the
other images' whole hashes. A photo pasted elsewhere, or a mosaic on another grid, is left to the local
features (:mod:`image_lineage.data.keypoints`), computed from the same grey picture.

A picture with almost no structure (one colour, or nearly: its grey thumbnail varies by less than
``FLAT_STD`` levels) has no hash: the signs of its DCT coefficients are noise, and two 1x1 PNGs of different
colours would match. It gets ``NO_HASH``, and the leakage check compares such images by their bytes only.

The search for near-identical pairs among many hashes is :mod:`image_lineage.quality.pairs`.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps

from image_lineage.data.keypoints import SIDE, keypoints, working_grey

HASH_SIZE = 32  # thumbnail side; the low 8x8 DCT coefficients give the 64 bits
CROPS = (0.0, 0.05, 0.10)  # whole picture, then its centre with this fraction cut from every side
TILES = ((0, 0), (0, 1), (1, 0), (1, 1))  # the quarters of the picture, as (row, column) of a 2x2 grid
# the seven flips and quarter turns of a picture, each as (transpose the coefficients?, negate odd vertical
# frequencies?, negate odd horizontal frequencies?), named as the pair report says them: the copy is its
# source ... ("rotated 90" is a quarter turn clockwise)
TURNS = {
    "flipped": (False, False, True),
    "flipped upside down": (False, True, False),
    "rotated 180": (False, True, True),
    "flipped and rotated 90": (True, False, False),
    "rotated 90": (True, False, True),
    "rotated 270": (True, True, False),
    "flipped and rotated 270": (True, True, True),
}
FLAT_STD = 2  # grey levels (of 255); the flattest real photo in ../shared/data varies by far more
# per image: whole, the centre crops, the quarters, the whole picture turned (TURNS order), the turn-free hash
TILE_COLUMNS = range(len(CROPS), len(CROPS) + len(TILES))
TURN_COLUMNS = range(TILE_COLUMNS.stop, TILE_COLUMNS.stop + len(TURNS))
TURN_FREE = TURN_COLUMNS.stop  # its column
HASHES = TURN_FREE + 1
# the turn-free hash's 63 coefficients after its always-set first bit: |C[u, v]| + |C[v, u]| for u <= v < 11,
# the DC term left out, the first 63 in row order; as places in the 11x11 corner read row by row
_FOLD_PAIRS = [(u, v) for u in range(11) for v in range(u, 11)][1:64]
FOLD_FIRST = np.array([u * 11 + v for u, v in _FOLD_PAIRS])
FOLD_SECOND = np.array([v * 11 + u for u, v in _FOLD_PAIRS])
NO_HASH = (0,) * HASHES  # a flat picture's hashes; a real pHash always has its DC bit set


# Each turned hash's 64 coefficients, read from the whole picture's 8x8 (row by row) with a sign: a quarter turn
# transposes them, and mirroring rows or columns negates the coefficients of odd frequency along them (a DCT-II
# coefficient of frequency k changes sign as (-1)^k when its signal is reversed)
_parity = (-1.0) ** np.arange(8)
_places = np.arange(64).reshape(8, 8)
TURN_PLACES = np.array([(_places.T if transpose else _places).ravel() for transpose, _, _ in TURNS.values()])
TURN_SIGNS = np.array([np.outer(_parity if rows else np.ones(8), _parity if columns else np.ones(8)).ravel()
                       for _, rows, columns in TURNS.values()], dtype=np.float32)
# OpenCV decodes JPEGs at 1/2, 1/4 or 1/8 scale straight to grey (libjpeg-turbo's DCT scaling), and, unlike
# PIL's Python-level parsing, every step here (decode, resize, DCT) runs in C without the GIL, so the image
# pass's threads hash in parallel. The picture is hashed as shown (OpenCV applies the EXIF orientation): a
# phone photo stored sideways matches its upright copy.
REDUCED_GREY = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def perceptual_facts(data: bytes, size: tuple[int, int] | None = None) -> tuple[tuple[int, ...], bytes]:
    """(hashes, keypoints) of an encoded image, from one decode: :func:`perceptual_hashes` and
    :func:`image_lineage.data.keypoints.keypoints`; (``NO_HASH``, b"") for a flat picture.

    ``size`` (width, height, from the header) lets the decoder scale down as far as both allow."""
    grey = working_grey(decode_grey(data, size))
    if is_flat(grey):
        return NO_HASH, b""
    return perceptual_hashes(grey), keypoints(grey)


def is_flat(grey: np.ndarray) -> bool:
    """Whether a grey uint8 picture varies by less than FLAT_STD levels (its standard deviation), decided exactly:
    n * sum(x^2) - sum(x)^2 < (FLAT_STD * n)^2, in integers (a float deviation may land either side of the
    threshold). OpenCV's sums, since numpy's std took 0.07 ms a picture; its sum of squares comes back as a double a
    few ulps off (squared from the L2 norm: 150643.99999999997 for 150644), far less than the 0.5 that ``round``
    corrects (at most 320 x 320 x 255^2 < 2^33)."""
    count = grey.size
    total, squares = round(cv2.sumElems(grey)[0]), round(cv2.norm(grey, cv2.NORM_L2SQR))
    return count * squares - total * total < FLAT_STD ** 2 * count * count


def perceptual_hashes(grey: np.ndarray) -> tuple[int, ...]:
    """(whole, centre 5%, centre 10%, the four quarters, then the whole picture as each of ``TURNS`` would
    hash, then the turn-free hash) pHashes of a grey picture, each a 64-bit unsigned int.

    Few numpy calls on purpose: the image pass runs this on threads, and each small numpy call holds the GIL
    while OpenCV's calls let it go, so the threads hand the GIL back and forth at every call (2,400 pictures,
    two threads: 268-271 us a picture with the turned and turn-free hashes made in loops, one 8x8 at a time,
    204-222 us as gathers from tables; the same bits)."""
    height, width = grey.shape
    # the whole picture's thumbnail and its quarters' from one 64x64 one (one resize instead of five)
    double = cv2.resize(grey, (2 * HASH_SIZE, 2 * HASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
    thumbnails = [cv2.resize(double, (HASH_SIZE, HASH_SIZE), interpolation=cv2.INTER_AREA)]
    thumbnails += [cv2.resize(grey[round(height * crop) : height - round(height * crop) or None,
                                   round(width * crop) : width - round(width * crop) or None],
                              (HASH_SIZE, HASH_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) for crop in CROPS[1:]]
    thumbnails += [double[row * HASH_SIZE : (row + 1) * HASH_SIZE, column * HASH_SIZE : (column + 1) * HASH_SIZE].copy()
                   for row, column in TILES]
    coefficients = [cv2.dct(thumbnail) for thumbnail in thumbnails]
    low = np.empty((HASHES, 64), dtype=np.float32)
    low[:TILE_COLUMNS.stop] = np.stack([corner[:8, :8] for corner in coefficients]).reshape(-1, 64)
    low[TURN_COLUMNS.start : TURN_COLUMNS.stop] = low[0][TURN_PLACES] * TURN_SIGNS
    magnitudes = np.abs(coefficients[0][:11, :11]).ravel()
    low[TURN_FREE, 0] = np.inf
    low[TURN_FREE, 1:] = magnitudes[FOLD_FIRST] + magnitudes[FOLD_SECOND]
    # each row's median of its 63 coefficients after the DC term (which would dominate it): the 32nd smallest, as
    # np.median gives for an odd count, without its 0.04 ms of bookkeeping
    bits = low > np.partition(low[:, 1:], 31, axis=1)[:, 31:32]
    return tuple(np.packbits(bits, axis=1).view(">u8").ravel().tolist())  # the first coefficient the highest bit


def decode_grey(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """A grey uint8 array of the picture, at least ``SIDE`` pixels on its long side and ``2 * HASH_SIZE`` on its
    short side when possible."""
    factor = 1
    if size:
        while factor < 8 and max(size) // (factor * 2) >= SIDE and min(size) // (factor * 2) >= HASH_SIZE * 2:
            factor *= 2
    try:
        grey = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), REDUCED_GREY[factor])
    except cv2.error as exc:  # OpenCV's own refusals (a size past its limit, say): the caller's "does not decode"
        raise ValueError(f"OpenCV: {exc.err}") from exc
    if grey is None:  # a format this OpenCV build does not read: PIL does
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (HASH_SIZE * 2, HASH_SIZE * 2))
            grey = np.asarray(ImageOps.exif_transpose(image).convert("L"))
    return grey
