"""The one pass over an image file's bytes: read once, and that read yields the image's identity.

:func:`read_images` is the only way the project reads an image file for lineage. Image folders, COCO
splits and Hugging Face image folders all call it; each file's bytes are read once and give, together:

* ``sha256`` and ``size`` (the content identity every digest is built from);
* ``width``, ``height`` and ``format``, from the header (a marker walk for JPEG, IHDR for PNG, the
  logical screen for GIF; PIL for the rarer formats);
* the structure verdict (``image_check``): a file must be whole. A JPEG must reach its end-of-image
  marker after its image data, a PNG its IEND chunk, a GIF its trailer, a WebP/BMP the size its header
  declares. Bytes after a valid end are accepted: cameras pad files. ``decode`` also decodes the image;
* with ``perceptual=True`` (the leakage check), the image's perceptual hashes and local features
  (:func:`image_lineage.data.perceptual.perceptual_facts`), from the same bytes.

Results are cached (:class:`image_lineage.data.cache.RecordCache`) by path, size, mtime, inode and ctime, and
perceptual hashes by the file's sha256, so a re-scan of an unchanged folder reads (and decodes) nothing at
all. Set ``IMAGE_LINEAGE_READ_LOG`` to a file to have every read appended to it as one line (tests count
reads across the processes of ``mlflow run .`` this way).
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import marshal
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from image_lineage.core import config
from image_lineage.core.names import ENGINE_CHOICES, IMAGE_CHECK_CHOICES, require_choice
from image_lineage.data._header import light_facts, note_read, read_light, read_noted
from image_lineage.data.cache import RecordCache
from image_lineage.data.facts import CHECK_DEPTH, ImageFacts
from image_lineage.data.object_store import is_object_uri, object_key, read_object
from image_lineage.data.perceptual import perceptual_facts

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
HELPER_SCRIPT = str(Path(__file__).with_name("_header.py"))
PAGE_CACHE_SAMPLE = 16
OBJECT_THREADS = 16  # objects of a streamed prefix read at once (each waits on the network)


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
    phash = corners = None
    if perceptual:
        try:
            phash, corners = perceptual_facts(data, facts[2:4])
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            return f"does not decode ({exc})"
    return ImageFacts(*facts, check, phash, corners)


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
                perceptual: bool = False, engine: str = "local") -> list[ImageFacts | str]:
    """Facts (or why-not strings) for every path, in order: from the cache where the file is unchanged
    and was checked at least as deeply as ``check`` asks (and, with ``perceptual``, its perceptual hashes
    are known), else read: light checks of files in the page cache by :func:`read_light_in_processes`, the
    rest on a thread pool (see WORKERS).

    ``cache``: True for the default cache (:meth:`RecordCache.default`), a cache, or None/False for none.
    ``engine``: ``spark`` reads what the cache cannot answer in a Spark job (:mod:`image_lineage.data.spark_pass`).
    """
    require_choice("image_check", check, IMAGE_CHECK_CHOICES)
    require_choice("engine", engine, ENGINE_CHOICES)
    cache = RecordCache.default() if cache is True else (cache or None)
    read_started_ns = time.time_ns()
    keys = [record_key(path) for path in paths] if cache else []
    cached = cache.lookup(keys, perceptual) if cache else {}
    results: list[ImageFacts | str | None] = [None] * len(paths)
    missing = []
    for index in range(len(paths)):
        hit = cached.get(keys[index]) if cache else None
        if hit and CHECK_DEPTH.get(hit.checked, -1) >= CHECK_DEPTH[check] and (hit.phash or not perceptual):
            results[index] = hit
        else:
            missing.append(index)
    read_log = config.read_log()
    wanted = [paths[i] for i in missing]
    if engine == "spark" and wanted:  # files, or objects the cluster reads through its S3 connector
        from image_lineage.data.spark_pass import read_on_spark  # imports pyspark: only when asked for

        found = read_on_spark(wanted, check, perceptual, read_log)
    elif wanted and is_object_uri(wanted[0]):  # a prefix streamed from an object store: no file
        found = read_objects(wanted, check, read_log, perceptual)
    elif check != "decode" and not perceptual and wanted and in_page_cache(wanted):
        found = [ImageFacts(*facts, check) if isinstance(facts, tuple) else facts
                 for facts in read_light_in_processes(wanted, check != "none", read_log)]
    else:
        found = read_on_threads(wanted, check, read_log, perceptual)
    for index, result in zip(missing, found):
        results[index] = result
    if cache and missing:
        cache.store([(keys[i], results[i]) for i in missing if isinstance(results[i], ImageFacts)], read_started_ns)
    return results


def read_on_threads(paths: list[str], check: str, read_log: str | None, perceptual: bool) -> list[ImageFacts | str]:
    """Every file read on the pool, CHUNK files a task (see WORKERS)."""
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]

    def read_chunk(chunk: list[str]) -> list[ImageFacts | str]:
        return [read_image(path, check, read_log, perceptual) for path in chunk]

    with ThreadPoolExecutor(WORKERS) as pool:
        return [facts for chunk_results in pool.map(read_chunk, chunks) for facts in chunk_results]


def read_objects(locations: list[str], check: str, read_log: str | None, perceptual: bool) -> list[ImageFacts | str]:
    """Objects of an object store (``s3://...``), each streamed into memory and through :func:`image_facts`,
    never written to disk: OBJECT_THREADS requests at a time (they wait on the network), so at most that many
    objects are held at once."""
    def read_one(location: str) -> ImageFacts | str:
        facts = image_facts(read_object(location), check, perceptual)
        if read_log:
            note_read(location, read_log)
        return facts

    with ThreadPoolExecutor(OBJECT_THREADS) as pool:
        return list(pool.map(read_one, locations))


def read_light_in_processes(paths: list[str], whole: bool, read_log: str | None) -> list[tuple | str]:
    """Light reads (:func:`image_lineage.data._header.read_light`) of files in the page cache: shared with
    helper processes when there are enough files and CPUs (see :mod:`image_lineage.data._header` for why),
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
def old_objects_skipped() -> Iterator[None]:
    """Garbage collections inside the block skip the objects that existed before it (``gc.freeze``).

    A scan makes ~100,000 small objects without cycles; in a process that already holds hundreds of
    thousands (MLflow, pandas, the user's own), each collection they trigger would walk all of those: a cold
    scan of 20,000 files took 0.68 s, 0.52 s with this (0.51 s with the collector switched off), measured in a
    process holding a datasets table, MLflow and 300,000 objects of its own. Unlike switching the collector
    off, collections still run, for every thread. Nothing is done when objects are already frozen (a
    pre-fork server's own ``gc.freeze``: leaving the block must not unfreeze them) or collection is off."""
    if gc.get_freeze_count() or not gc.isenabled():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


def record_key(path: str) -> tuple[str, int, int, int, int]:
    """The record cache's key: a file's stat key, or an object's identity (ETag, size, last-modified)."""
    if is_object_uri(path):
        return object_key(path)
    return stat_key(path)


def stat_key(path: str) -> tuple[str, int, int, int, int]:
    # stat() follows links, so a link that now points elsewhere has another inode: a miss. Folder walks
    # pass absolute paths already (abspath costs as much as the stat itself at 20,000 files).
    st = os.stat(path)
    return (path if path.startswith("/") and "/." not in path else os.path.abspath(path), st.st_size,
            st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
