"""Local features of one image: ORB keypoints, for copies that no whole-picture hash survives.

A perceptual hash sees the whole frame, so a copy whose frame differs from its source's (a quarter cut from
one side, the photo pasted on a larger canvas, a tile of a mosaic, a turn by a few degrees) hashes as far
from it as another photo does (16-30 bits of 64, measured on ../shared/data). Local features do not care
about the frame: ORB (Rublee et al. 2011, OpenCV's free alternative to SIFT) finds corners at several scales
and describes each by 256 brightness comparisons around it, turned to the corner's own orientation, so the
same corner in a cropped, pasted or turned copy has nearly the same description. The pair search
(:mod:`image_lineage.quality.matching`) then asks whether many corners of two images agree on one move.

What is kept per image, and why these numbers (measured on the 271 real photos and 60 copies of each kind,
three seeds: a 4-10 degree turn, 10-25 % cut from one side, a corner with 75-90 % of the area, the photo as
half to 4/5 of a larger canvas):

* ``FEATURES`` = 256 corners: the copies kept at least 45 corners that agree on the move (a turn: 116);
* found on the picture scaled to ``SIDE`` = 320 pixels on its long side (catsdogs' photos are ~250, COCO's
  640): corners are found at one scale whatever the file's resolution, and three pyramid levels 1.5x apart
  reach copies 2.25x smaller or larger;
* FAST's own corner score instead of Harris's, and three levels instead of four 1.4x apart: 1.22 ms an image
  instead of 1.54 ms (600 photos, one core, same process), with every copy still found;
* corners at least 20 grey levels sharp, or 7 where a picture has fewer than 128 such (a soft COCO photo had
  43, too few to show a cut copy);
* edge and patch of 15 pixels (not ORB's 31): a 250-pixel photo keeps the corners near its border;
* 38 bytes a corner (the 32-byte descriptor; its position in 1/65535ths of the long side; its orientation
  and pyramid level, for the pair search's vote): about 9.7 KB an image in the record cache.
"""

from __future__ import annotations

import threading
from operator import attrgetter

import cv2
import numpy as np

FEATURES = 256
SIDE = 320
LEVELS = 3
FAST_THRESHOLDS = (20, 7)  # grey levels: the sharp corners first; fainter ones where a picture has too few
DESCRIPTOR_BYTES = 32
_RECORD = DESCRIPTOR_BYTES + 6  # the descriptor, x and y as uint16, the orientation and the pyramid level
_ANGLE, _OCTAVE = attrgetter("angle"), attrgetter("octave")
_local = threading.local()  # an OpenCV detector is not documented as safe to share between threads


def detector(fast_threshold: int) -> cv2.ORB:
    """This thread's ORB detector for corners at least ``fast_threshold`` grey levels sharp."""
    detectors = _local.__dict__.setdefault("detectors", {})
    if fast_threshold not in detectors:
        detectors[fast_threshold] = cv2.ORB_create(nfeatures=FEATURES, scaleFactor=1.5, nlevels=LEVELS, edgeThreshold=15,
                                                   patchSize=15, fastThreshold=fast_threshold,
                                                   scoreType=cv2.ORB_FAST_SCORE)
    return detectors[fast_threshold]


def working_grey(grey: np.ndarray) -> np.ndarray:
    """``grey`` scaled down to SIDE pixels on its long side (a smaller picture is left as it is)."""
    height, width = grey.shape
    if max(height, width) <= SIDE:
        return grey
    scale = SIDE / max(height, width)
    return cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def keypoints(grey: np.ndarray) -> bytes:
    """The picture's ORB corners, packed (see :func:`unpack`); empty when it has none."""
    found, descriptors = detector(FAST_THRESHOLDS[0]).detectAndCompute(grey, None)
    if len(found) < FEATURES // 2:  # a soft picture: look again for fainter corners (as ORB-SLAM does)
        found, descriptors = detector(FAST_THRESHOLDS[1]).detectAndCompute(grey, None)
    if descriptors is None or not found:
        return b""
    long_side = max(grey.shape)
    # the points in one call, and the orientations and levels each read by np.fromiter: a Python loop over 256
    # keypoints holds the GIL, and the image pass's threads wait on it (a comprehension of (angle, octave) pairs:
    # 57 us an image, these two: 22 us)
    points = cv2.KeyPoint_convert(found).astype(np.float64) / long_side
    positions = np.clip(np.rint(points * 65535), 0, 65535).astype("<u2")
    angles = np.fromiter(map(_ANGLE, found), dtype=np.float64, count=len(found))
    levels = np.fromiter(map(_OCTAVE, found), dtype=np.float64, count=len(found))
    poses = np.column_stack([np.rint(angles * 256 / 360) % 256, levels]).astype(np.uint8)  # rint: as round()
    return descriptors.astype(np.uint8).tobytes() + positions.tobytes() + poses.tobytes()


def unpack(packed: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, descriptors, poses): an (n, 2) float32 array of x, y in units of the picture's long side, the
    (n, 32) uint8 ORB descriptors, and an (n, 2) uint8 array of each corner's orientation (1/256 turns) and
    pyramid level."""
    count = len(packed) // _RECORD
    descriptors = np.frombuffer(packed, dtype=np.uint8, count=count * DESCRIPTOR_BYTES).reshape(count, DESCRIPTOR_BYTES)
    positions = np.frombuffer(packed, dtype="<u2", count=count * 2, offset=count * DESCRIPTOR_BYTES).reshape(count, 2)
    poses = np.frombuffer(packed, dtype=np.uint8, offset=count * (DESCRIPTOR_BYTES + 4)).reshape(count, 2)
    return positions.astype(np.float32) / 65535, descriptors, poses
