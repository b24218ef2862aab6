"""Read an image file once and tell its identity, size and format from its header: the light read.

This is the part of :mod:`image_lineage.data.read` that needs no image library (JPEG, PNG and GIF
headers are walked here; PIL is imported only for the rarer formats), so it also runs as a helper
process started with ``python -I -S _header.py``: without site-packages it is ready in ~10 ms
(``read`` with OpenCV and numpy takes ~180 ms); they are added only if a file needs PIL.

Why a process: for files already in the page cache a light read is bound by the interpreter (open, read,
sha256, header walk: ~30 us a file), and threads hand the GIL back and forth between those short steps
(two threads ran slower than one). A second process reads its share with its own interpreter
(:func:`image_lineage.data.read.read_light_in_processes`). It gets ``(whole, read_log, paths)`` on stdin
and writes one result per path on stdout, both with ``marshal``, which needs the same Python on both ends:
it is the same executable.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import sys

LightFacts = tuple  # (sha256 hex, size, width, height, format)


# Pillow refuses to open a picture of more pixels than this (2 x PIL.Image.MAX_IMAGE_PIXELS, 89,478,485: a
# decompression bomb; a real 15,000 x 15,000 PNG is past it) and OpenCV one past 2**30; a header that claims
# more is a bad image, named and skippable like any other
MAX_PIXELS = 2 * 89_478_485
FIRST_READ = 1 << 16  # most dataset images are smaller: one read; a larger allocation costs more than an fstat


def read_file(path: str) -> bytes:
    """The whole file: ``os.open``/``os.read`` cost half of ``open().read()`` (no buffered file object)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        data = os.read(descriptor, FIRST_READ)
        if len(data) < FIRST_READ:  # a short read of a regular file: its end
            return data
        parts = [data, os.read(descriptor, max(os.fstat(descriptor).st_size - FIRST_READ + 1, 1))]
        while parts[-1]:  # to the end, also when the file grew meanwhile
            parts.append(os.read(descriptor, 1 << 20))
        return b"".join(parts)
    finally:
        os.close(descriptor)


def note_read(path, read_log: str) -> None:
    with open(read_log, "a", encoding="utf-8") as handle:  # one short append per line: atomic across processes
        handle.write(f"{path if '://' in str(path) else os.path.abspath(path)}\n")


def light_facts(data: bytes, whole: bool) -> LightFacts | str:
    """(sha256, size, width, height, format) of an image held in memory, checking that the file is whole
    when ``whole``; or a string that says why it is not a usable image."""
    if not data:
        return "zero-byte file"
    header = parse_header(data, whole)
    if isinstance(header, str):
        return header
    fmt, width, height = header
    if width * height > MAX_PIXELS:
        return (f"claims {width}x{height} pixels, more than the {MAX_PIXELS:,} Pillow opens (a decompression "
                "bomb, or a picture far too large to train on): resize it")
    return (hashlib.sha256(data).hexdigest(), len(data), width, height, fmt)


def read_noted(path: str, read_log: str | None) -> bytes:
    """The file's bytes, the read appended to ``read_log`` when one is given (see ``IMAGE_LINEAGE_READ_LOG``)."""
    data = read_file(path)
    if read_log:
        note_read(path, read_log)
    return data


def read_light(path: str, whole: bool, read_log: str | None) -> LightFacts | str:
    return light_facts(read_noted(path, read_log), whole)


def parse_header(data: bytes, whole: bool) -> tuple[str, int, int] | str:
    """(format, width, height), checking the file is whole when ``whole``; or why it is not an image."""
    if data[:2] == b"\xff\xd8":
        return jpeg_header(data, whole)
    if data[:8] == PNG_SIGNATURE:
        return png_header(data, whole)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return gif_header(data, whole)
    return pil_header(data, whole)


# ---------------------------------------------------------------- JPEG

# Start-of-frame markers carry the picture size; C4 (Huffman tables), C8 and CC (arithmetic coding) do not.
JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}
JPEG_EOI = b"\xff\xd9"
JPEG_SOS = b"\xff\xda"


def jpeg_header(data: bytes, whole: bool) -> tuple[str, int, int] | str:
    """Walk the marker segments to the frame header; for ``whole``, find the first scan after it and the
    end-of-image marker after that.

    The size is the picture's as shown: a phone photo stored sideways with an EXIF orientation that turns it
    (5 to 8) gives its height as its width, as every viewer and ``PIL.ImageOps.exif_transpose`` show it.

    The walk takes microseconds where ``PIL.Image.open`` spends ~60 us per file parsing every segment in
    Python, for the same answer. Inside entropy-coded data an FF byte is always followed by 00 or a
    restart marker, so an FFD9 after the first start-of-scan can only be the real end of the image (an
    EXIF thumbnail's end marker lies before the frame header): a file cut anywhere after its header has
    none. The scan and the end marker are found with ``bytes.find``/``rfind``, in C: this runs for every
    file while holding the GIL, and a Python walk over the table segments cost 10% of a threaded scan.
    """
    position, end, turned = 2, len(data), False
    while position + 4 <= end:  # byte arithmetic, no slices
        if data[position] != 0xFF:
            return "not a well-formed JPEG (marker walk lost its way: the header is damaged)"
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):
            return "not a well-formed JPEG (its image data or end comes before any frame header)"
        length = data[position + 2] << 8 | data[position + 3]
        if marker == 0xE1 and data.startswith(b"Exif\x00\x00", position + 4):
            turned = exif_orientation(data, position + 10, position + 2 + length) in (5, 6, 7, 8)
        if marker in JPEG_SOF_MARKERS:
            if position + 9 > end or length < 7:
                return "truncated JPEG (the file ends inside its frame header)"
            height = data[position + 5] << 8 | data[position + 6]
            width = data[position + 7] << 8 | data[position + 8]
            if not (width and height):
                return f"JPEG frame header gives an empty picture ({width}x{height})"
            if whole:
                scan = data.find(JPEG_SOS, position + 2 + length)
                if scan < 0:
                    return "truncated JPEG (the file ends before its image data)"
                if data.rfind(JPEG_EOI, scan + 2) < 0:
                    return "truncated JPEG (no end-of-image marker after the image data: the file was cut short)"
            return ("jpeg", height, width) if turned else ("jpeg", width, height)
        position += 2 + length
    return "truncated JPEG (the file ends inside its header)"


def exif_orientation(data: bytes, start: int, stop: int) -> int:
    """The Orientation tag (0x0112) of the EXIF block (a TIFF structure) in ``data[start:stop]``; 1 (as
    stored) when there is none or the block is damaged."""
    block = data[start:stop]
    order = {b"II": "little", b"MM": "big"}.get(block[:2])
    if order is None or len(block) < 8:
        return 1
    ifd = int.from_bytes(block[4:8], order)
    if ifd + 2 > len(block):
        return 1
    for entry in range(ifd + 2, min(ifd + 2 + 12 * int.from_bytes(block[ifd:ifd + 2], order), len(block) - 11), 12):
        if int.from_bytes(block[entry:entry + 2], order) == 0x0112:
            return int.from_bytes(block[entry + 8:entry + 10], order)
    return 1


# ---------------------------------------------------------------- PNG and GIF

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header(data: bytes, whole: bool) -> tuple[str, int, int] | str:
    """IHDR gives the size; for ``whole``, the chunk lengths must lead to a complete IEND chunk."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return "truncated PNG (no IHDR chunk after the signature)"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not (width and height):
        return f"PNG header gives an empty picture ({width}x{height})"
    if whole:
        position, end = 8, len(data)
        while True:
            if position + 12 > end:
                return "truncated PNG (the file ends before its IEND chunk)"
            length = int.from_bytes(data[position : position + 4], "big")
            kind = data[position + 4 : position + 8]
            position += 12 + length
            if position > end:
                return f"truncated PNG (the file ends inside a {kind.decode('latin-1')} chunk)"
            if kind == b"IEND":
                break
    return ("png", width, height)


def gif_header(data: bytes, whole: bool) -> tuple[str, int, int] | str:
    """The logical screen gives the size; for ``whole``, the blocks must lead to the trailer (3B)."""
    if len(data) < 13:
        return "truncated GIF (the file ends inside its header)"
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if whole and not gif_reaches_trailer(data):
        return "truncated GIF (the file ends before its trailer)"
    return ("gif", width, height)


def gif_reaches_trailer(data: bytes) -> bool:
    end = len(data)
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    while position < end:
        block = data[position]
        if block == 0x3B:
            return True
        if block == 0x21:  # extension: label, then data sub-blocks
            position += 2
        elif block == 0x2C:  # image descriptor (+ local colour table), LZW code size, data sub-blocks
            if position + 10 > end:
                return False
            local = data[position + 9]
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
        else:
            return False
        while position < end and data[position]:  # sub-blocks until the zero-length terminator
            position += data[position] + 1
        position += 1
    return False


# ---------------------------------------------------------------- the rest (WebP, BMP, ...)


def pil_header(data: bytes, whole: bool) -> tuple[str, int, int] | str:
    """PIL identifies the format and size; for ``whole``, the declared file size must be there."""
    if sys.flags.no_site:  # the helper process starts without site-packages (~25 ms less): add them now
        import site

        site.main()
    from PIL import Image, UnidentifiedImageError  # here: the helper imports the standard library only

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = (image.format or "unknown").lower(), image.size
            image.verify()  # header and structure checks PIL has for the format (no full decode)
    except UnidentifiedImageError:
        return f"not an image: no known image format starts this file (first bytes {data[:8]!r})"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"not a readable image ({exc})"
    if whole:
        declared = declared_size(data)
        if declared and len(data) < declared:
            return f"truncated {fmt.upper()} (header declares {declared} bytes, the file has {len(data)})"
    return (fmt, width, height)


def declared_size(data: bytes) -> int | None:
    """The file size a RIFF (WebP) or BMP header states, or None for formats that state none."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return int.from_bytes(data[4:8], "little") + 8
    if data[:2] == b"BM":
        return int.from_bytes(data[2:6], "little")
    return None


# ---------------------------------------------------------------- the helper process


def serve(stdin=None, stdout=None) -> None:
    """Read ``(whole, read_log, paths)`` from ``stdin``, write one result per path to ``stdout``: facts, a
    reason string, or for a file that cannot be opened ``{"errno", "strerror", "filename"}``."""
    whole, read_log, paths = marshal.load(stdin or sys.stdin.buffer)
    results = []
    for path in paths:
        try:
            results.append(read_light(path, whole, read_log))
        except OSError as exc:
            results.append({"errno": exc.errno, "strerror": exc.strerror, "filename": path})
    (stdout or sys.stdout.buffer).write(marshal.dumps(results))


if __name__ == "__main__":
    serve()
