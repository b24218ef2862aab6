"""The one pass over an image file's bytes: read once, and that read yields the image's identity.

:func:`read_images` is the only way the project reads an image file for lineage. Image folders, COCO
splits and Hugging Face image folders all call it; each file's bytes are read once and give, together:

* ``sha256`` and ``size`` (the content identity every digest is built from);
* ``width``, ``height`` and ``format``, from the header (a marker walk for JPEG, IHDR for PNG, the
  logical screen for GIF; PIL for the rarer formats);
* the structure verdict (``image_check``): a file must be whole. A JPEG must reach its end-of-image
  marker after its image data, a PNG its IEND chunk, a GIF its trailer, a WebP/BMP the size its header
  declares. Bytes after a valid end are accepted: cameras pad files. ``decode`` also decodes the image;
* with ``perceptual=True`` (the leakage check), the image's perceptual hashes
  (:func:`image_lineage.perceptual.perceptual_hashes`), from the same bytes.

Results are cached (:class:`RecordCache`) by path, size, mtime and inode, and perceptual hashes by the
file's sha256, so a re-scan of an unchanged folder reads (and decodes) nothing at all. Set ``IMAGE_LINEAGE_READ_LOG`` to a file to have every read appended to it
as one line (tests count reads across the processes of ``mlflow run .`` this way).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from image_lineage.core import IMAGE_CHECK_CHOICES, LineageError
from image_lineage.perceptual import perceptual_hashes

LOGGER = logging.getLogger(__name__)

# Reading and sha256 release the GIL, the header walk does not: a few workers on chunks of files beat
# one task per file (thousands of tiny tasks spend their time on the pool's locks). Threads pay off while
# they wait on the disk; for files already in the page cache the GIL hand-offs make two threads slower
# than one (20,000 photos of 18 KB, 2 cores: one thread 0.68 s, two 1.0 s; from a cold disk, one 3.6 s,
# four 2.3 s). A header-and-hash pass therefore runs on this thread when a sample of its files is in the
# page cache (asked of the kernel: a read with RWF_NOWAIT fails rather than wait for the disk);
# decodes and perceptual hashes always use the pool.
WORKERS = max(4, os.cpu_count() or 2)
CHUNK = 64
PAGE_CACHE_SAMPLE = 16
READ_LOG_ENV = "IMAGE_LINEAGE_READ_LOG"
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
    phash: tuple[int, int, int] | None = None  # perceptual hashes (whole, centre 5%, centre 10%) when asked for


# ---------------------------------------------------------------- one file


def read_image(path: str | os.PathLike, check: str = "structure", read_log: str | None = None,
               perceptual: bool = False) -> ImageFacts | str:
    """Read ``path`` once; return its facts, or a string that says why it is not a usable image.

    ``read_log``: a file to append the path to (see ``IMAGE_LINEAGE_READ_LOG``)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if read_log:
        note_read(path, read_log)
    return image_facts(data, check, perceptual)


def image_facts(data: bytes, check: str = "structure", perceptual: bool = False) -> ImageFacts | str:
    """Facts of an image held in memory (``check`` and ``perceptual`` as in :func:`read_images`)."""
    if not data:
        return "zero-byte file"
    header = parse_header(data, check != "none")
    if isinstance(header, str):
        return header
    fmt, width, height = header
    if check == "decode":
        problem = decode_problem(data)
        if problem:
            return problem
    phash = None
    if perceptual:
        try:
            phash = perceptual_hashes(data, (width, height))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return f"does not decode ({exc})"
    return ImageFacts(hashlib.sha256(data).hexdigest(), len(data), width, height, fmt, check, phash)


def note_read(path, read_log: str) -> None:
    with open(read_log, "a", encoding="utf-8") as handle:  # one short append per line: atomic across processes
        handle.write(f"{os.path.abspath(path)}\n")


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

    The walk takes microseconds where ``PIL.Image.open`` spends ~60 us per file parsing every segment in
    Python, for the same answer. Inside entropy-coded data an FF byte is always followed by 00 or a
    restart marker, so an FFD9 after the first start-of-scan can only be the real end of the image (an
    EXIF thumbnail's end marker lies before the frame header): a file cut anywhere after its header has
    none. The scan and the end marker are found with ``bytes.find``/``rfind``, in C: this runs for every
    file while holding the GIL, and a Python walk over the table segments cost 10% of a threaded scan.
    """
    position, end = 2, len(data)
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
            return ("jpeg", width, height)
        position += 2 + length
    return "truncated JPEG (the file ends inside its header)"


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


def decode_problem(data: bytes) -> str | None:
    """Why the image does not decode (PIL's own words), or None when every pixel decodes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # Pillow's decoders release the GIL: the pool's threads decode in parallel
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"does not decode ({exc})"
    return None


# ---------------------------------------------------------------- many files, cached


def read_images(paths: list[str], check: str = "structure", cache: "RecordCache | None | bool" = True,
                perceptual: bool = False) -> list[ImageFacts | str]:
    """Facts (or why-not strings) for every path, in order: from the cache where the file is unchanged
    and was checked at least as deeply as ``check`` asks (and, with ``perceptual``, its perceptual hashes
    are known), else read on a thread pool.

    ``cache``: True for the default cache (:meth:`RecordCache.default`), a cache, or None/False for none.
    """
    if check not in IMAGE_CHECK_CHOICES:
        raise LineageError(f"image_check must be one of {', '.join(IMAGE_CHECK_CHOICES)}, got {check!r}.")
    cache = RecordCache.default() if cache is True else (cache or None)
    keys = [stat_key(path) for path in paths] if cache else []
    cached = cache.lookup(keys, perceptual) if cache else {}
    results: list[ImageFacts | str | None] = [None] * len(paths)
    missing = []
    for index in range(len(paths)):
        hit = cached.get(keys[index]) if cache else None
        if hit and CHECK_DEPTH[hit.checked] >= CHECK_DEPTH[check] and (hit.phash or not perceptual):
            results[index] = hit
        else:
            missing.append(index)
    chunks = [missing[i : i + CHUNK] for i in range(0, len(missing), CHUNK)]
    read_log = os.environ.get(READ_LOG_ENV)

    def read_chunk(chunk: list[int]) -> list[ImageFacts | str]:
        return [read_image(paths[i], check, read_log, perceptual) for i in chunk]

    for chunk, chunk_results in read_chunks(chunks, read_chunk, check != "decode" and not perceptual, paths):
        for index, result in zip(chunk, chunk_results):
            results[index] = result
    if cache and missing:
        cache.store([(keys[i], results[i]) for i in missing if isinstance(results[i], ImageFacts)])
    return results


def read_chunks(chunks: list[list[int]], read_chunk, light: bool, paths: list[str]):
    """(chunk, results) for every chunk, in order; see WORKERS for when the pool is used."""
    if light and chunks and in_page_cache([paths[chunk[0]] for chunk in chunks]):
        yield from ((chunk, read_chunk(chunk)) for chunk in chunks)
        return
    with ThreadPoolExecutor(WORKERS) as pool:
        yield from zip(chunks, pool.map(read_chunk, chunks))


def in_page_cache(paths: list[str]) -> bool:
    """True when the first page of each of up to PAGE_CACHE_SAMPLE files, spread over ``paths``, is in
    memory (Linux ``preadv2(RWF_NOWAIT)``); False where the kernel cannot tell."""
    if not hasattr(os, "RWF_NOWAIT"):
        return False
    step = max(1, len(paths) // PAGE_CACHE_SAMPLE)
    page = bytearray(4096)
    for path in paths[::step][:PAGE_CACHE_SAMPLE]:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # read_image reports it
        try:
            os.preadv(descriptor, [page], 0, os.RWF_NOWAIT)
        except OSError:  # BlockingIOError: not in memory; EOPNOTSUPP: this filesystem cannot say
            return False
        finally:
            os.close(descriptor)
    return True


def stat_key(path: str) -> tuple[str, int, int, int]:
    # stat() follows links, so a link that now points elsewhere has another inode: a miss. Folder walks
    # pass absolute paths already (abspath costs as much as the stat itself at 20,000 files).
    st = os.stat(path)
    return (path if path.startswith("/") and "/." not in path else os.path.abspath(path), st.st_size,
            st.st_mtime_ns, st.st_ino)


class RecordCache:
    """Image facts keyed by (absolute path, size, mtime_ns, inode).

    The same idea as git's index and dvc's state database: a re-scan of an unchanged folder costs one
    ``stat`` per file instead of reading every byte. Any write to a file changes its mtime (and usually
    its size), so a changed file is always read again. Stored in sqlite under ``$IMAGE_LINEAGE_CACHE_DIR``
    (default ``~/.cache/image_lineage``); set it to ``off`` to disable.
    """

    ENV = "IMAGE_LINEAGE_CACHE_DIR"
    FILE = "image_records.sqlite"
    COLUMNS = "path, size, mtime_ns, inode, sha256, width, height, format, checked"

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self.connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS images (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER,"
                " sha256 TEXT, width INTEGER, height INTEGER, format TEXT, checked TEXT)"
            )
            # perceptual hashes depend on the bytes alone: keyed by sha256, so every copy of a file shares them
            db.execute("CREATE TABLE IF NOT EXISTS perceptual (sha256 TEXT PRIMARY KEY, hashes TEXT)")
            # a folder's last scan as a whole (image_lineage.manifest): one row read instead of a row per file
            db.execute("CREATE TABLE IF NOT EXISTS scans (folder TEXT PRIMARY KEY, state TEXT, result TEXT)")

    @staticmethod
    def folder() -> Path | None:
        """Where the project caches what it learned (``$IMAGE_LINEAGE_CACHE_DIR``, default
        ``~/.cache/image_lineage``); None when the variable says ``off``."""
        folder = os.environ.get(RecordCache.ENV) or str(Path.home() / ".cache" / "image_lineage")
        return None if folder.lower() == "off" else Path(folder)

    @classmethod
    def default(cls) -> "RecordCache | None":
        folder = cls.folder()
        if folder is None:
            return None
        try:
            return cls(folder / cls.FILE)
        except (OSError, sqlite3.Error) as exc:  # a read-only home must not stop logging
            LOGGER.warning("image record cache disabled (%s): %s", folder, exc)
            return None

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def lookup(self, keys: list[tuple[str, int, int, int]], perceptual: bool = False) -> dict[tuple, ImageFacts]:
        """{key: facts} for the keys whose stored size, mtime and inode still match (with their perceptual
        hashes when ``perceptual`` and they are known)."""
        wanted = set(keys)
        found = {}
        columns = f"{self.COLUMNS}, perceptual.hashes" if perceptual else f"{self.COLUMNS}, NULL"
        join = "LEFT JOIN perceptual USING (sha256)" if perceptual else ""
        with contextlib.closing(self.connect()) as db:
            for where, values in self.selections([key[0] for key in keys]):
                for path, size, mtime_ns, inode, sha256, width, height, fmt, checked, hashes in db.execute(
                        f"SELECT {columns} FROM images {join} WHERE {where}", values):
                    if (path, size, mtime_ns, inode) in wanted:
                        phash = tuple(int(h, 16) for h in hashes.split(",")) if hashes else None
                        found[(path, size, mtime_ns, inode)] = ImageFacts(sha256, size, width, height, fmt, checked, phash)
        return found

    @staticmethod
    def selections(paths: list[str]) -> list[tuple[str, list[str]]]:
        """WHERE clauses that select ``paths``: one range over the primary key when they share a folder
        (a version folder: one indexed scan instead of 40 IN lists at 20,000 files), else IN lists of 500
        (sqlite caps the bound parameters)."""
        folder = os.path.commonprefix([min(paths), max(paths)]).rpartition("/")[0] if paths else ""
        if folder.count("/") >= 2:
            return [("path > ? AND path < ?", [folder + "/", folder + "0"])]  # "0" follows "/" in the byte order
        return [(f"path IN ({','.join('?' * len(chunk))})", chunk) for chunk in (paths[i:i + 500] for i in range(0, len(paths), 500))]

    def scan_result(self, folder: str, state: str) -> str | None:
        """What :meth:`store_scan` kept for ``folder`` when its state (every file's stat key, the options)
        was ``state``; None when the folder changed since, or was never scanned."""
        with contextlib.closing(self.connect()) as db:
            row = db.execute("SELECT result FROM scans WHERE folder = ? AND state = ?", (folder, state)).fetchone()
        return row[0] if row else None

    def store_scan(self, folder: str, state: str, result: str) -> None:
        try:
            with contextlib.closing(self.connect()) as db, db:
                db.execute("INSERT OR REPLACE INTO scans VALUES (?, ?, ?)", (folder, state, result))
        except sqlite3.Error as exc:
            LOGGER.warning("could not update the image record cache %s: %s", self.path, exc)

    def store(self, entries: list[tuple[tuple[str, int, int, int], ImageFacts]]) -> None:
        rows = [(*key, f.sha256, f.width, f.height, f.format, f.checked) for key, f in entries]
        hashes = [(f.sha256, ",".join(f"{h:016x}" for h in f.phash)) for _, f in entries if f.phash]
        try:
            with contextlib.closing(self.connect()) as db, db:
                db.executemany(f"INSERT OR REPLACE INTO images ({self.COLUMNS}) VALUES ({','.join('?' * 9)})", rows)
                db.executemany("INSERT OR REPLACE INTO perceptual VALUES (?, ?)", hashes)
        except sqlite3.Error as exc:  # another process holding the lock too long: skip, never fail
            LOGGER.warning("could not update the image record cache %s: %s", self.path, exc)

