"""Where an image's bytes are: a file, or an object of an object store (``s3://...``) streamed without a copy.

The few steps that need an image's bytes after the image pass (sample files, sample grids, the content
store's packs, the leakage report's thumbnails) read them here, so a version streamed from a bucket needs no
local copy (:mod:`image_lineage.data.object_store`).
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from image_lineage.data.object_store import is_object_uri, read_object

# Objects read ahead, in order, while the caller writes the ones before: each GET waits on the network
# (~15 ms on loopback: 2,000 objects one after another took 30 s), and at most this many are held at once.
READ_AHEAD = 32


def join(base: str | os.PathLike, relative: str) -> str:
    """``base/relative`` as a string (a Path would turn ``s3://`` into ``s3:/``)."""
    return f"{str(base).rstrip('/')}/{relative}"


def read_bytes(location: str | os.PathLike) -> bytes:
    if is_object_uri(location):
        return read_object(location)
    with open(location, "rb") as file:
        return file.read()


def read_in_order(locations: list) -> Iterator[bytes]:
    """Each location's bytes, in order: files read one by one here, objects READ_AHEAD at a time on threads."""
    if not locations or not is_object_uri(locations[0]):
        yield from (read_bytes(location) for location in locations)
        return
    with ThreadPoolExecutor(READ_AHEAD) as pool:
        pending = deque()
        for location in locations:
            pending.append(pool.submit(read_bytes, location))
            if len(pending) >= READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def open_image(location: str | os.PathLike):
    """A PIL image of the file or object (an object's bytes held in memory while it is open)."""
    from PIL import Image

    return Image.open(io.BytesIO(read_bytes(location)) if is_object_uri(location) else location)
