"""What one read of an image file tells: the record the image pass returns and the record cache keeps."""

from __future__ import annotations

from typing import NamedTuple

# image_check levels, shallow to deep: a file checked deeper also passed every shallower check
CHECK_DEPTH = {name: depth for depth, name in enumerate(("none", "structure", "decode"))}


class ImageFacts(NamedTuple):
    """What one read of an image file tells: identity, geometry, and the checks it passed.

    A NamedTuple: one is made per file on the scan's hot path, where a dataclass costs several times more."""

    sha256: str
    size: int
    width: int
    height: int
    format: str  # jpeg, png, gif, webp, bmp, or PIL's name for the rarer ones (lower case)
    checked: str = "none"  # the deepest image_check this file passed
    phash: tuple[int, ...] | None = None  # perceptual hashes (whole, centre crops, quarters, turns) when asked for
    keypoints: bytes | None = None  # ORB corners (image_lineage.data.keypoints), with the hashes
