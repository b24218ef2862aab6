import logging
import os
import random
import shutil

import pytest
from helpers import build_real_versions, build_tree, write_image

from image_lineage.core.errors import DatasetError
from image_lineage.data.cache import RecordCache
from image_lineage.data.diff import diff_manifests, summarize_diff
from image_lineage.data.folders import RememberedManifest, compute_digest, scan_version
from image_lineage.data.kinds import LoadOptions
from image_lineage.data.versions import list_versions, read_version


def scan(path, **kwargs):
    return scan_version(path, **kwargs)


def test_bundled_sample_manifest(bundled_images):
    v1, v2 = scan(bundled_images / "v1"), scan(bundled_images / "v2")
    assert v1.class_counts() == {"cat": 2}
    assert v2.class_counts() == {"cat": 1, "dog": 2}
    assert [r.path for r in v2.records] == ["cat/cat_01.jpg", "dog/dog_01.jpg", "dog/dog_02.jpg"]
    record = v2.records[0]
    assert (record.label, record.width, record.height) == ("cat", 128, 128)
    assert record.size == (bundled_images / "v2/cat/cat_01.jpg").stat().st_size
    assert len(v1.digest) == 64 and v1.digest != v2.digest


def test_diff_v1_to_v2_on_bundled_sample(bundled_images):
    diff = diff_manifests(scan(bundled_images / "v1"), scan(bundled_images / "v2"))
    assert diff["added"] == ["dog/dog_01.jpg", "dog/dog_02.jpg"]
    assert diff["removed"] == ["cat/cat_02.jpg"]
    assert diff["modified"] == [] and diff["relabelled"] == []
    assert diff["unchanged"] == 1
    assert summarize_diff(diff) == "v1->v2: +2 -1 ~0 relabelled 0"


def test_digest_stable_under_copy_order_and_mtime(tmp_path):
    root = build_tree(tmp_path / "a", {"v1": {"cat": 3, "dog": 2}})
    original = scan(root / "v1")
    copy = tmp_path / "b" / "v1"
    shutil.copytree(root / "v1", copy)
    for file in copy.rglob("*.png"):
        os.utime(file, (1_000_000, 1_000_000))
    assert scan(copy).digest == original.digest
    shuffled = original.records[:]
    random.Random(0).shuffle(shuffled)
    assert compute_digest(shuffled) == original.digest


@pytest.mark.parametrize("change", ["flip_byte", "move_class", "add_file"])
def test_digest_changes(tmp_path, change):
    root = build_tree(tmp_path, {"v1": {"cat": 2, "dog": 2}}, ext="jpg")
    before = scan(root / "v1")
    if change == "flip_byte":
        path = root / "v1/cat/cat_01.jpg"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside the entropy-coded scan: still a readable JPEG
        path.write_bytes(bytes(data))
        after = scan(root / "v1")
        assert len(after.records) == len(before.records)
    elif change == "move_class":
        shutil.move(root / "v1/cat/cat_01.jpg", root / "v1/dog/cat_01.jpg")
        after = scan(root / "v1")
    else:
        write_image(root / "v1/dog/dog_99.jpg", seed=4242)
        after = scan(root / "v1")
    assert after.digest != before.digest


def test_flipped_pixel_byte_changes_digest_and_shows_as_modified(tmp_path):
    root = build_tree(tmp_path, {"v1": {"cat": 2}})
    before = scan(root / "v1")
    shutil.copytree(root / "v1", root / "v2")
    path = root / "v2/cat/cat_02.png"
    image_bytes = bytearray(path.read_bytes())
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        img.putpixel((0, 0), tuple((c + 1) % 256 for c in img.getpixel((0, 0))))
        img.save(path)
    assert path.read_bytes() != bytes(image_bytes)
    after = scan(root / "v2")
    assert after.digest != before.digest
    assert diff_manifests(before, after)["modified"] == ["cat/cat_02.png"]


def test_diff_reports_relabelled_files(tmp_path):
    root = build_tree(tmp_path, {"v1": {"cat": 2, "dog": 1}})
    shutil.copytree(root / "v1", root / "v2")
    shutil.move(root / "v2/cat/cat_02.png", root / "v2/dog/cat_02.png")
    diff = diff_manifests(scan(root / "v1"), scan(root / "v2"))
    assert diff["relabelled"] == [
        {"from": "cat/cat_02.png", "to": "dog/cat_02.png", "from_label": "cat", "to_label": "dog"}
    ]
    assert diff["added"] == [] and diff["removed"] == []


def test_real_photos_manifest_digest_and_diff(catsdogs_dir, tmp_path):
    root = build_real_versions(catsdogs_dir, tmp_path)
    v1, v2 = scan(root / "v1"), scan(root / "v2")
    assert v1.class_counts() == {"cat": 6}
    assert v2.class_counts() == {"cat": 4, "dog": 5}
    assert all((r.width, r.height) == (256, 256) for r in v2.records)
    diff = diff_manifests(v1, v2)
    assert len(diff["removed"]) == 2 and len(diff["added"]) == 5 and diff["unchanged"] == 4
    shutil.copytree(root / "v2", tmp_path / "copy" / "v2")
    assert scan(tmp_path / "copy" / "v2").digest == v2.digest


def test_extensions_case_insensitive_and_non_images_listed(tmp_path):
    root = build_tree(tmp_path, {"v1": {"cat": 1}})
    write_image(root / "v1/cat/UPPER.PNG", seed=7)
    write_image(root / "v1/cat/photo.JpEg", seed=8)
    (root / "v1/cat/notes.txt").write_text("not an image")
    (root / "v1/cat/.DS_Store").write_bytes(b"\0")
    (root / "v1/README.md").write_text("loose file")
    manifest = scan(root / "v1")
    assert sorted(r.path for r in manifest.records) == ["cat/UPPER.PNG", "cat/cat_01.png", "cat/photo.JpEg"]
    ignored = {item["path"]: item["reason"] for item in manifest.ignored}
    assert ignored == {
        "cat/notes.txt": "not an image extension",
        "cat/.DS_Store": "hidden",
        "README.md": "not inside a class folder",
    }


def test_missing_data_dir_and_version(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_version(str(tmp_path / "nope"), "v1", LoadOptions())
    build_tree(tmp_path, {"v1": {"cat": 1}, "v2": {"cat": 1}})
    with pytest.raises(DatasetError, match="versions found: v1, v2"):
        read_version(str(tmp_path), "v3", LoadOptions())


def test_versions_in_natural_order(tmp_path):
    build_tree(tmp_path, {name: {"cat": 1} for name in ("v10", "v2", "v1")})
    assert list_versions(str(tmp_path)) == ["v1", "v2", "v10"]
    assert read_version(str(tmp_path), "v10", LoadOptions()).diff["old_version"] == "v2"
    first = read_version(str(tmp_path), "v1", LoadOptions())
    assert first.diff["old_version"] is None and "skipped_versions" not in first.diff


def test_empty_class_folder_counts_zero_with_warning(tmp_path, caplog):
    root = build_tree(tmp_path, {"v1": {"cat": 2}})
    (root / "v1/dog").mkdir()
    manifest = scan(root / "v1")
    assert manifest.class_counts() == {"cat": 2, "dog": 0}
    assert manifest.non_empty_classes() == ["cat"]
    assert "dog holds no images" in caplog.text


def test_empty_version_is_an_error(tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        scan(tmp_path / "v1")
    (tmp_path / "v1/cat").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        scan(tmp_path / "v1")


@pytest.mark.parametrize("content", [b"", b"this is not a jpeg at all"], ids=["zero_byte", "corrupt"])
def test_bad_image_fails_naming_the_file_or_is_skipped(tmp_path, content):
    root = build_tree(tmp_path, {"v1": {"cat": 2}})
    (root / "v1/cat/broken.jpg").write_bytes(content)
    with pytest.raises(DatasetError, match=r"cat/broken\.jpg.*on_bad_image=skip"):
        scan(root / "v1")
    manifest = scan(root / "v1", on_bad_image="skip")
    assert len(manifest.records) == 2
    assert [item["path"] for item in manifest.ignored] == ["cat/broken.jpg"]


def test_symlink_outside_data_dir_refused_inside_allowed(tmp_path):
    outside = write_image(tmp_path / "elsewhere" / "x.png", seed=3)
    root = build_tree(tmp_path / "data", {"v1": {"cat": 1}, "v2": {"cat": 1}})
    (root / "v2/cat/from_v1.png").symlink_to(root / "v1/cat/cat_01.png")
    assert len(scan(root / "v2").records) == 2
    (root / "v2/cat/escape.png").symlink_to(outside)
    with pytest.raises(DatasetError, match="outside data_dir"):
        scan(root / "v2")


@pytest.mark.parametrize("name", ["my cats", "kätzchen", "-dash"])
def test_unsafe_class_folder_name_is_an_error(tmp_path, name):
    root = build_tree(tmp_path, {"v1": {"cat": 1}})
    write_image(root / "v1" / name / "a.png", seed=1)
    with pytest.raises(DatasetError, match="not a safe artifact path segment"):
        scan(root / "v1")


def test_hash_cache_skips_unchanged_files_and_rereads_changed_ones(tmp_path, monkeypatch):
    root = build_tree(tmp_path / "data", {"v1": {"cat": 3}}, ext="jpg")
    first = scan(root / "v1")

    read_log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(read_log))
    assert scan(root / "v1").digest == first.digest
    assert not read_log.exists()  # nothing was read: every record came from the cache
    monkeypatch.delenv("IMAGE_LINEAGE_READ_LOG")

    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(tmp_path / "cache"))
    scan(root / "v1")
    path = root / "v1/cat/cat_02.jpg"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    changed = scan(root / "v1")
    assert changed.digest != first.digest
    assert changed.digest == scan(root / "v1", use_cache=False).digest


def test_hash_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", "off")
    assert RecordCache.default() is None
    root = build_tree(tmp_path, {"v1": {"cat": 1}})
    assert len(scan(root / "v1").records) == 1


def test_unchanged_folder_is_answered_by_its_last_scan_and_a_change_is_seen(tmp_path, monkeypatch, caplog):
    """A re-scan of an unchanged folder reads one cache row for the whole folder (the warm re-log's path);
    one rewritten file, or a skipped bad image, still shows."""
    root = build_tree(tmp_path, {"v1": {"cat": 3, "dog": 2}})
    log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(log))
    first = scan_version(root / "v1")
    again = scan_version(root / "v1")
    assert isinstance(again, RememberedManifest) and again.class_counts() == first.class_counts()
    assert again.records == first.records and again.digest == first.digest and len(log.read_text().splitlines()) == 5
    assert again.to_json() == first.to_json()
    (root / "v1" / "bird").mkdir()  # an empty class folder: warned about by the remembered scan too
    empty = scan_version(root / "v1")
    caplog.clear()
    assert scan_version(root / "v1").class_counts() == {**empty.class_counts(), "bird": 0}
    assert "v1/bird holds no images" in caplog.text
    (root / "v1" / "bird").rmdir()
    scan_version(root / "v1")
    with RecordCache.default().connect() as db:  # a damaged row is scanned past, not trusted or fatal
        db.execute("UPDATE scans SET result = 'not json'")
    with caplog.at_level(logging.DEBUG, logger="image_lineage.data.folders"):
        assert scan_version(root / "v1").records == first.records
    assert "unreadable" in caplog.text
    write_image(root / "v1" / "dog" / "dog_02.png", seed=999)
    changed = scan_version(root / "v1")
    assert changed.digest != first.digest and len(log.read_text().splitlines()) == 6  # only that file read again
    (root / "v1" / "cat" / "cat_01.png").write_bytes(b"")
    skipped = scan_version(root / "v1", "skip")
    caplog.clear()
    remembered = scan_version(root / "v1", "skip")
    assert remembered.ignored == skipped.ignored == [{"path": "cat/cat_01.png", "reason": skipped.ignored[0]["reason"]}]
    assert "skipping bad image cat/cat_01.png" in caplog.text and remembered.digest == skipped.digest
    with pytest.raises(DatasetError, match="cat_01.png"):  # another option: not the remembered scan
        scan_version(root / "v1", "fail")


def test_main_digests_a_folder_of_versions_as_its_steps_read_it(tmp_path):
    """``main``'s step digest passes over a folder beside the versions that is no version (``pool/`` of
    loose files), as log_folder_dataset does, instead of refusing the data folder."""
    from image_lineage.data.versions import versions_digest
    from image_lineage.flows.workflow import data_digest

    root = build_tree(tmp_path, {"v1": {"cat": 2}, "v2": {"cat": 1, "dog": 1}})
    (root / "pool").mkdir()
    write_image(root / "pool" / "spare.png", seed=3)
    digest = data_digest(root)
    assert digest == versions_digest(str(root), LoadOptions(perceptual=True))
    shutil.rmtree(root / "pool")
    assert data_digest(root) == digest  # the same versions, the same digest


def test_a_folder_copied_from_a_mac_keeps_its_digest(tmp_path):
    """macOS writes file names decomposed (NFD: 'e' + combining accent); Linux keeps what it is given (NFC
    here). The digest takes paths as NFC, so the same photos give the same digest either way; the manifest
    keeps each file's own name (the one that opens it)."""
    import unicodedata

    for form, version in (("NFC", "linux"), ("NFD", "mac")):
        write_image(tmp_path / version / "cat" / unicodedata.normalize(form, "café_crème.png"), seed=3)
    assert {p.name for p in (tmp_path / "linux/cat").iterdir()} != {p.name for p in (tmp_path / "mac/cat").iterdir()}
    linux, mac = scan(tmp_path / "linux"), scan(tmp_path / "mac")
    assert mac.digest == linux.digest
    assert [r.path for r in mac.records] == ["cat/" + unicodedata.normalize("NFD", "café_crème.png")]
