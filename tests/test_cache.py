"""The image record cache answers "don't know" on any doubt: a cache written by another layout (today's
release before the schema version, or a later one), a damaged file, or a bad row is rebuilt or read past,
never a crash and never a stale answer; and the header helper runs on the standard library alone."""

import contextlib
import marshal
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from helpers import build_tree, write_image
from PIL import Image

from image_lineage.data import cache as record_cache
from image_lineage.data._header import read_light
from image_lineage.data.cache import SCHEMA_VERSION, RecordCache
from image_lineage.data.folders import scan_version
from image_lineage.data.read import HELPER_SCRIPT

# the tables of the cache as the release before the schema version wrote them (no user_version)
UNVERSIONED_TABLES = (
    "CREATE TABLE images (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER,"
    " sha256 TEXT, width INTEGER, height INTEGER, format TEXT, checked TEXT)",
    "CREATE TABLE perceptual (sha256 TEXT PRIMARY KEY, hashes TEXT)",
    "CREATE TABLE scans (folder TEXT PRIMARY KEY, state TEXT, result TEXT)",
)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(folder))
    return folder


def stale_answer(path, tables=UNVERSIONED_TABLES, version=0):
    """A cache file whose every row lies: the folder's scan and each file's sha256 are wrong."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for table in tables:
            db.execute(table)
        db.execute(f"PRAGMA user_version = {version}")
        db.execute("INSERT INTO scans VALUES ('x', 'y', 'z')")


def test_a_cache_written_by_todays_layout_before_the_version_is_rebuilt(cache_dir, tmp_path):
    root = build_tree(tmp_path / "data", {"v1": {"cat": 2}})
    expected = scan_version(root / "v1", use_cache=False).digest
    path = cache_dir / RecordCache.FILE
    stale_answer(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # a row that would answer with another sha256
        db.execute("INSERT INTO images VALUES (?, 1, 1, 1, 'ffff', 1, 1, 'png', 'decode')", (str(root / "v1/cat/cat_01.png"),))
    assert scan_version(root / "v1").digest == expected
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT count(*) FROM scans WHERE folder = 'x'").fetchone()[0] == 0  # old rows gone
    assert scan_version(root / "v1").digest == expected  # and the rebuilt cache serves the next scan


def test_a_cache_with_a_new_column_from_a_later_layout_is_rebuilt_not_a_crash(cache_dir, tmp_path):
    """The README's recipe for a new per-image check adds a column: an older or newer file must not crash."""
    root = build_tree(tmp_path / "data", {"v1": {"cat": 1}})
    later = (UNVERSIONED_TABLES[0].replace("checked TEXT)", "checked TEXT, blur REAL NOT NULL)"), *UNVERSIONED_TABLES[1:])
    stale_answer(cache_dir / RecordCache.FILE, later, version=SCHEMA_VERSION + 1)
    assert scan_version(root / "v1").records


@pytest.mark.parametrize("damage", [b"this is not a database", b"SQLite format 3\x00" + b"\x00" * 80])
def test_a_damaged_cache_file_is_rebuilt(cache_dir, tmp_path, damage):
    root = build_tree(tmp_path / "data", {"v1": {"cat": 2}})
    (cache_dir / RecordCache.FILE).write_bytes(damage)
    assert scan_version(root / "v1").digest == scan_version(root / "v1", use_cache=False).digest


def test_a_cache_damaged_while_in_use_is_a_miss(cache_dir, tmp_path, monkeypatch, caplog):
    root = build_tree(tmp_path / "data", {"v1": {"cat": 2}})
    first = scan_version(root / "v1")
    monkeypatch.setattr(record_cache, "_current", set())  # as another process: it checks the file
    (cache_dir / RecordCache.FILE).write_bytes(b"garbage" * 100)  # damaged under a running process
    cache = RecordCache.__new__(RecordCache)
    cache.path = cache_dir / RecordCache.FILE
    assert cache.lookup([("/a", 1, 1, 1)]) == {} and "unreadable" in caplog.text  # "don't know", no crash
    assert scan_version(root / "v1").digest == first.digest


def test_the_header_helper_runs_on_the_standard_library_alone(tmp_path):
    """``python -I -S _header.py`` (no site-packages: its fast start) reads JPEG, PNG and GIF headers as this
    process does; a top-level import beyond the standard library would fail it here. Drawn images only."""
    files = []
    for fmt, suffix in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif")):
        path = write_image(tmp_path / f"drawn.{suffix}", seed=7, size=(40, 30))
        Image.open(path).convert("RGB").save(path, fmt)
        files.append(str(path))
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "drawn.jpg").read_bytes()[:100])
    files.append(str(tmp_path / "cut.jpg"))
    done = subprocess.run([sys.executable, "-I", "-S", HELPER_SCRIPT], input=marshal.dumps((True, None, files)),
                          capture_output=True, check=True)
    assert marshal.loads(done.stdout) == [read_light(f, True, None) for f in files]
    assert [r[4] for r in marshal.loads(done.stdout)[:3]] == ["jpeg", "png", "gif"]
    source = open(HELPER_SCRIPT).read()
    top_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert all(line.split()[1].split(".")[0] in sys.stdlib_module_names or line.startswith("from __future__")
               for line in top_imports), top_imports


def test_with_the_cache_off_s3_mirrors_share_one_temporary_folder_removed_at_exit(tmp_path):
    """``IMAGE_LINEAGE_CACHE_DIR=off``: every prefix a process mirrors lies in one temporary folder (a version
    and its diff base side by side), which is gone once the process exits."""
    code = ("from image_lineage.data.object_store import mirror_root\n"
            "first, second = mirror_root(), mirror_root()\n"
            "assert first == second and first.is_dir(), (first, second)\n"
            "(first / 'bucket').mkdir()\n"
            "print(first)\n")
    env = {**__import__("os").environ, "IMAGE_LINEAGE_CACHE_DIR": "off"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    folder = done.stdout.strip()
    assert folder and not __import__("pathlib").Path(folder).exists()


def test_a_scan_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    """The scan skips old objects in collections (gc.freeze) and unfreezes after; objects someone else froze
    (a pre-fork server) stay frozen, and a collector switched off stays off."""
    import gc

    root = build_tree(tmp_path, {"v1": {"cat": 3}})
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    scan_version(root / "v1", use_cache=False)
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        scan_version(root / "v1", use_cache=False)
        # theirs stay frozen (an unfreeze would empty the count); a few of them may die meanwhile (a pool's
        # thread of an earlier test ending): the suite once saw 968,880 -> 968,878
        assert frozen - 16 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        scan_version(root / "v1", use_cache=False)
        assert not gc.isenabled()
    finally:
        gc.enable()


def same_size_images(folder, count=2):
    """BMP files of one size (uncompressed: the same size whatever the colours), each of another colour."""
    paths = []
    for index in range(count):
        path = folder / f"{index}.bmp"
        Image.new("RGB", (16, 16), (index * 90, 40, 200 - index * 90)).save(path)
        paths.append(path)
    assert len({p.stat().st_size for p in paths}) == 1
    return paths


@pytest.mark.parametrize("rewrite", ["cp -p", "tar"])
def test_a_same_size_rewrite_that_keeps_the_mtime_is_read_again(cache_dir, tmp_path, rewrite):
    """cp -p, rsync -t and archive unpacking set the mtime back; the ctime (which nobody can set) tells."""
    import shutil
    import tarfile
    import time

    version = tmp_path / "data/v1"
    (version / "cat").mkdir(parents=True)
    first, other = same_size_images(version / "cat")
    time.sleep(record_cache.RACY_NS / 1e9 + 0.05)
    before = scan_version(version)
    if rewrite == "cp -p":
        stat = first.stat()
        shutil.copyfile(other, first)
        os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p does
    else:
        with tarfile.open(tmp_path / "v.tar", "w") as tar:  # the other picture under the first one's name
            info = tar.gettarinfo(other, arcname="cat/0.bmp")
            info.mtime = int(first.stat().st_mtime)
            with open(other, "rb") as source:
                tar.addfile(info, source)
        os.utime(first, (int(first.stat().st_mtime),) * 2)  # whole seconds, as the archive holds them
        before = scan_version(version)  # cached again after the mtime change
        time.sleep(record_cache.RACY_NS / 1e9 + 0.05)
        with tarfile.open(tmp_path / "v.tar") as tar:
            tar.extractall(version, filter="data")
    assert first.stat().st_size == other.stat().st_size
    after = scan_version(version)
    assert after.digest == scan_version(version, use_cache=False).digest != before.digest


def test_a_file_changed_just_before_it_was_read_is_not_cached(cache_dir, tmp_path, monkeypatch):
    """A change in the same clock tick as the read could keep every stat field: such records are not kept."""
    monkeypatch.setattr(record_cache, "RACY_NS", 10**12)  # every file is "just changed"
    root = build_tree(tmp_path / "data", {"v1": {"cat": 2}})
    scan_version(root / "v1")
    with contextlib.closing(sqlite3.connect(cache_dir / RecordCache.FILE)) as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM scans").fetchone()[0] == 0
    monkeypatch.setattr(record_cache, "RACY_NS", 0)
    scan_version(root / "v1")
    with contextlib.closing(sqlite3.connect(cache_dir / RecordCache.FILE)) as db:
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 2


def test_perceptual_hashes_of_another_layout_are_computed_again(cache_dir, tmp_path, catsdogs_dir):
    """A cache row holding the three hashes an earlier release stored (no turned or turn-free ones) is a miss
    for the leakage check, never an answer of the wrong shape."""
    from image_lineage.data.perceptual import HASHES
    from image_lineage.data.read import read_images

    photo = tmp_path / "cat.jpg"
    photo.write_bytes(sorted((catsdogs_dir / "cat").glob("*.jpg"))[0].read_bytes())
    (fresh,) = read_images([str(photo)], perceptual=True)
    with contextlib.closing(sqlite3.connect(cache_dir / RecordCache.FILE)) as db, db:
        db.execute("UPDATE perceptual SET hashes = ?", (",".join(f"{h:016x}" for h in fresh.phash[:3]),))
    (again,) = read_images([str(photo)], perceptual=True)
    assert len(again.phash) == HASHES and again.phash == fresh.phash
    with contextlib.closing(sqlite3.connect(cache_dir / RecordCache.FILE)) as db, db:
        db.execute("UPDATE perceptual SET keypoints = NULL")  # hashes without their corners: a miss too
    (third,) = read_images([str(photo)], perceptual=True)
    assert third.keypoints and third.keypoints == fresh.keypoints and third.phash == fresh.phash


def test_a_deeper_scan_answers_a_lighter_one_but_its_skips_answer_only_itself(cache_dir, tmp_path, catsdogs_dir):
    """The diff base of a version is scanned with ``on_bad_image=skip`` and no hashes: the version's own log,
    checked as deeply or deeper, answers it from one row. A scan that skipped bad files answers only the same
    scan: a lighter check may keep a file the deeper one refused."""
    folder = tmp_path / "v1" / "cat"
    folder.mkdir(parents=True)
    for photo in sorted((catsdogs_dir / "cat").glob("*.jpg"))[:3]:
        shutil.copyfile(photo, folder / photo.name)
    deep = scan_version(tmp_path / "v1", image_check="decode", perceptual=True)
    light = scan_version(tmp_path / "v1", image_check="structure", on_bad_image="skip")
    assert type(light).__name__ == "RememberedManifest" and light.digest == deep.digest
    assert type(scan_version(tmp_path / "v1", image_check="decode", perceptual=True)).__name__ == "RememberedManifest"

    cut = folder / "cut.jpg"  # a JPEG without its end: whole enough for "none", not for "structure"
    cut.write_bytes((folder / sorted(p.name for p in folder.iterdir())[0]).read_bytes()[:-400])
    skipped = scan_version(tmp_path / "v1", image_check="structure", on_bad_image="skip")
    assert "cat/cut.jpg" not in {r.path for r in skipped.records} and len(skipped.ignored) == 1
    kept = scan_version(tmp_path / "v1", image_check="none", on_bad_image="skip")
    assert "cat/cut.jpg" in {r.path for r in kept.records}
    with pytest.raises(Exception, match="cut.jpg"):
        scan_version(tmp_path / "v1", image_check="structure")  # fails on it, as a first scan would


def test_a_hard_link_to_a_file_already_read_is_not_read_again(cache_dir, tmp_path, catsdogs_dir, monkeypatch):
    """v2 made of hard links to v1 (cp -al, rsync --link-dest): the same inode, size, mtime and ctime. A file
    changed through either name changes its ctime for both, and is read again."""
    v1 = tmp_path / "v1" / "cat"
    v1.mkdir(parents=True)
    for photo in sorted((catsdogs_dir / "cat").glob("*.jpg"))[:4]:
        shutil.copyfile(photo, v1 / photo.name)
    (tmp_path / "v2" / "cat").mkdir(parents=True)
    for photo in v1.iterdir():
        os.link(photo, tmp_path / "v2" / "cat" / photo.name)
    first = scan_version(tmp_path / "v1")
    reads = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(reads))
    assert scan_version(tmp_path / "v2").digest == first.digest and not reads.exists()
    changed = sorted((tmp_path / "v2" / "cat").iterdir())[0]
    with open(changed, "r+b") as file:  # same size, new bytes, through the v2 name
        file.seek(100)
        file.write(bytes(b ^ 0xFF for b in file.read(8)))
    assert scan_version(tmp_path / "v1").digest != first.digest  # the v1 name sees the change: read again
    assert reads.read_text().count("\n") == 1
