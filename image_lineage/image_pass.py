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
import gc
import io
import logging
import marshal
import os
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, NamedTuple
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from image_lineage.core import IMAGE_CHECK_CHOICES, LineageError
from image_lineage.image_header import light_facts, read_light, read_noted
from image_lineage.perceptual import perceptual_hashes

LOGGER = logging.getLogger(__name__)

# Reading and sha256 release the GIL, the header walk does not: a few workers on chunks of files beat
# one task per file (thousands of tiny tasks spend their time on the pool's locks). Threads pay off while
# they wait on the disk; for files already in the page cache the GIL hand-offs make two threads slower
# than one (20,000 photos of 18 KB, 2 cores: one thread 0.68 s, two 1.0 s; from a cold disk, one 3.6 s,
# four 2.3 s). A header-and-hash pass therefore runs without threads when a sample of its files is in the
# page cache (asked of the kernel: a read with RWF_NOWAIT fails rather than wait for the disk), shared
# with helper processes (one per further CPU) when each gets at least PROCESS_MIN_SHARE files: a helper
# starts in ~10 ms, the time of ~400 light reads. Decodes and perceptual hashes always use the pool.
WORKERS = max(4, os.cpu_count() or 2)
CHUNK = 64
PROCESS_MIN_SHARE = 2000
HELPER_SCRIPT = str(Path(__file__).with_name("image_header.py"))
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
    return image_facts(read_noted(path, read_log), check, perceptual)


def image_facts(data: bytes, check: str = "structure", perceptual: bool = False) -> ImageFacts | str:
    """Facts of an image held in memory (``check`` and ``perceptual`` as in :func:`read_images`)."""
    facts = light_facts(data, check != "none")
    if isinstance(facts, str):
        return facts
    if check == "decode":
        problem = decode_problem(data)
        if problem:
            return problem
    phash = None
    if perceptual:
        try:
            phash = perceptual_hashes(data, facts[2:4])
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return f"does not decode ({exc})"
    return ImageFacts(*facts, check, phash)


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
    are known), else read: light checks of files in the page cache by :func:`read_light_in_processes`, the
    rest on a thread pool (see WORKERS).

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
    read_log = os.environ.get(READ_LOG_ENV)
    wanted = [paths[i] for i in missing]
    if check != "decode" and not perceptual and wanted and in_page_cache(wanted):
        found = [ImageFacts(*facts, check) if isinstance(facts, tuple) else facts
                 for facts in read_light_in_processes(wanted, check != "none", read_log)]
    else:
        found = read_on_threads(wanted, check, read_log, perceptual)
    for index, result in zip(missing, found):
        results[index] = result
    if cache and missing:
        cache.store([(keys[i], results[i]) for i in missing if isinstance(results[i], ImageFacts)])
    return results


def read_on_threads(paths: list[str], check: str, read_log: str | None, perceptual: bool) -> list[ImageFacts | str]:
    """Every file read on the pool, CHUNK files a task (see WORKERS)."""
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]

    def read_chunk(chunk: list[str]) -> list[ImageFacts | str]:
        return [read_image(path, check, read_log, perceptual) for path in chunk]

    with ThreadPoolExecutor(WORKERS) as pool:
        return [facts for chunk_results in pool.map(read_chunk, chunks) for facts in chunk_results]


def read_light_in_processes(paths: list[str], whole: bool, read_log: str | None) -> list[tuple | str]:
    """Light reads (:func:`image_lineage.image_header.read_light`) of files in the page cache: shared with
    helper processes when there are enough files and CPUs (see :mod:`image_lineage.image_header` for why),
    else all on this thread. A helper that cannot start or fails leaves its share to this process."""
    helpers = min(usable_cpus() - 1, len(paths) // PROCESS_MIN_SHARE - 1)
    if helpers < 1:
        return [read_light(path, whole, read_log) for path in paths]
    step = -(-len(paths) // (helpers + 1))
    shares = [paths[i : i + step] for i in range(0, len(paths), step)]
    started = [HelperRead(share, whole, read_log) for share in shares[:-1]]  # they start while this one reads
    own = [read_light(path, whole, read_log) for path in shares[-1]]
    results = []
    for helper in started:
        results.extend(helper.results())
    results.extend(own)
    for result in results:
        if isinstance(result, dict):  # a file the helper could not open: the error this thread would raise
            raise OSError(result["errno"], result["strerror"], result["filename"])
    return results


class HelperRead:
    """One helper process reading a share of the files; :meth:`results` waits for them."""

    def __init__(self, paths: list[str], whole: bool, read_log: str | None):
        self.paths, self.whole, self.read_log = paths, whole, read_log
        self.output: bytes | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)  # feeds stdin while this process reads
        self.thread.start()

    def run(self) -> None:
        try:
            helper = subprocess.Popen([sys.executable, "-I", "-S", HELPER_SCRIPT], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            output, errors = helper.communicate(marshal.dumps((self.whole, self.read_log, self.paths)))
            if helper.returncode:
                self.error = f"exit {helper.returncode}: {errors.decode(errors='replace')[-2000:]}"
            else:
                self.output = output
        except OSError as exc:  # no interpreter to start (an embedded Python), too many processes, ...
            self.error = str(exc)

    def results(self) -> list:
        self.thread.join()
        if self.output is not None:
            results = marshal.loads(self.output)
            if len(results) == len(self.paths):
                return results
            self.error = f"{len(results)} results for {len(self.paths)} files"
        LOGGER.debug("image read helper failed (%s): this process reads its %d files", self.error, len(self.paths))
        return [read_light(path, self.whole, self.read_log) for path in self.paths]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block. A scan makes ~100,000 small objects without cycles;
    in a process that already holds millions (MLflow, pandas, a loaded ``datasets`` table) each collection
    they trigger walks all of those: 0.1 s of a 0.23 s warm scan of 20,000 files, measured."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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

