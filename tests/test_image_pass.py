"""The one image pass: header sizes, structure checks on real photos cut short, decode checks, the cache."""

import io
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from entrypoints import log_folder_dataset as folder_cli
from entrypoints import log_hf_dataset as hf_cli
from image_lineage.core.errors import DatasetError
from image_lineage.data._header import read_light
from image_lineage.data.facts import ImageFacts
from image_lineage.data.folders import scan_version
from image_lineage.data.read import HelperRead, image_facts, in_page_cache, read_images, read_light_in_processes


def real_photo(catsdogs_dir, index=0) -> bytes:
    return sorted((catsdogs_dir / "cat").glob("*.jpg"))[index].read_bytes()


def png_of(jpeg: bytes) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        out = io.BytesIO()
        image.save(out, "PNG")
    return out.getvalue()


def encode(jpeg: bytes, fmt: str, **options) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_header_size_matches_pil(tmp_path, mode, progressive):
    path = tmp_path / "x.jpg"
    Image.new(mode, (37, 23)).save(path, progressive=progressive, exif=Image.Exif())
    facts = image_facts(path.read_bytes())
    assert (facts.format, facts.width, facts.height) == ("jpeg", 37, 23)


def test_header_sizes_on_real_photos_equal_pil(catsdogs_dir):
    for path in sorted(catsdogs_dir.rglob("*.jpg"))[:40]:
        with Image.open(path) as image:
            assert (image_facts(path.read_bytes()).width, image_facts(path.read_bytes()).height) == image.size


def test_whole_real_photos_pass_in_every_format(catsdogs_dir):
    photo = real_photo(catsdogs_dir)
    forms = {"jpeg": photo, "png": png_of(photo), "gif": encode(photo, "GIF"), "webp": encode(photo, "WEBP"),
             "bmp": encode(photo, "BMP"), "progressive": encode(photo, "JPEG", progressive=True)}
    for name, data in forms.items():
        for check in ("none", "structure", "decode"):
            facts = image_facts(data, check)
            assert isinstance(facts, ImageFacts), (name, check, facts)
            assert (facts.width, facts.height, facts.checked) == (256, 256, check)


def test_padding_after_the_end_marker_is_accepted(catsdogs_dir):
    photo = real_photo(catsdogs_dir)
    for padding in (b"\0" * 1000, b"\xff" * 7, b"camera trailer"):
        assert isinstance(image_facts(photo + padding), ImageFacts)
    png = png_of(photo)
    assert isinstance(image_facts(png + b"\0" * 64), ImageFacts)


@pytest.mark.parametrize("cut", ["header", "200 bytes", "middle", "one byte short"])
def test_real_jpeg_cut_short_fails_structure(catsdogs_dir, cut):
    photo = real_photo(catsdogs_dir)
    length = {"header": 20, "200 bytes": 200, "middle": len(photo) // 2, "one byte short": len(photo) - 1}[cut]
    verdict = image_facts(photo[:length])
    assert isinstance(verdict, str) and "truncated JPEG" in verdict
    if cut != "header":  # the header alone still gives the size: what `none` (and the old parser) accepted
        assert isinstance(image_facts(photo[:length], "none"), ImageFacts)


@pytest.mark.parametrize("fraction", [0.01, 0.5, None])
def test_real_png_cut_short_fails_structure(catsdogs_dir, fraction):
    png = png_of(real_photo(catsdogs_dir))
    cut = png[: int(len(png) * fraction)] if fraction else png[:-1]
    assert "truncated PNG" in image_facts(cut)


def test_gif_webp_bmp_cut_short_fail(catsdogs_dir):
    photo = real_photo(catsdogs_dir)
    for fmt in ("GIF", "WEBP", "BMP"):
        data = encode(photo, fmt)
        assert isinstance(image_facts(data[: len(data) - 10]), str), fmt


def test_zero_bytes_and_text_named_jpg():
    assert image_facts(b"") == "zero-byte file"
    assert "not an image" in image_facts(b"name,label\ncat.jpg,cat\n")


def test_decode_finds_what_structure_cannot(catsdogs_dir):
    png = bytearray(png_of(real_photo(catsdogs_dir)))
    start = png.find(b"IDAT") + 2000
    png[start : start + 200] = bytes(b ^ 0x55 for b in png[start : start + 200])  # damaged pixels, whole file
    assert isinstance(image_facts(bytes(png)), ImageFacts)
    assert "does not decode" in image_facts(bytes(png), "decode")


def test_cache_rereads_a_file_for_a_deeper_check(tmp_path, catsdogs_dir, monkeypatch):
    path = tmp_path / "cat.jpg"
    path.write_bytes(real_photo(catsdogs_dir))
    log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(log))
    read_images([str(path)], "structure")
    read_images([str(path)], "structure")
    read_images([str(path)], "none")  # a shallower check is answered by the cache
    assert log.read_text().count("cat.jpg") == 1
    (facts,) = read_images([str(path)], "decode")
    assert facts.checked == "decode" and log.read_text().count("cat.jpg") == 2


# ---------------------------------------------------------------- through the entry points


def version_with(catsdogs_dir, tmp_path, name: str, data: bytes):
    root = tmp_path / "data"
    folder = root / "v1" / "cat"
    folder.mkdir(parents=True)
    for path in sorted((catsdogs_dir / "cat").glob("*.jpg"))[1:4]:
        shutil.copyfile(path, folder / path.name)
    (folder / name).write_bytes(data)
    return root


def test_truncated_photo_fails_folder_logging_and_no_run_finishes(catsdogs_dir, tmp_path, experiment_name, sqlite_uri, caplog):
    root = version_with(catsdogs_dir, tmp_path, "cut.jpg", real_photo(catsdogs_dir)[:200])
    code = folder_cli.main(["--data-dir", str(root), "--version", "v1", "--experiment-name", experiment_name])
    assert code == 2 and "cut.jpg" in caplog.text and "truncated JPEG" in caplog.text
    runs = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert not [r for r in runs if r.info.status == "FINISHED"]


def test_truncated_photo_skipped_is_listed(catsdogs_dir, tmp_path):
    root = version_with(catsdogs_dir, tmp_path, "cut.jpg", real_photo(catsdogs_dir)[:-1])
    manifest = scan_version(root / "v1", on_bad_image="skip")
    assert [r.path for r in manifest.records if r.path.endswith("cut.jpg")] == []
    assert any(item["path"] == "cat/cut.jpg" and "truncated" in item["reason"] for item in manifest.ignored)
    with pytest.raises(DatasetError, match=r"cut\.jpg.*on_bad_image=skip"):
        scan_version(root / "v1")


def test_hf_dataset_checks_images_and_skips_with_on_bad_image(catsdogs_dir, tmp_path, experiment_name, sqlite_uri, caplog):
    root = version_with(catsdogs_dir, tmp_path, "cut.jpg", real_photo(catsdogs_dir)[: 5000])
    assert hf_cli.main(["--source", str(root / "v1"), "--experiment-name", experiment_name]) == 2
    assert "cut.jpg" in caplog.text and "-P on_bad_image=skip" in caplog.text
    assert hf_cli.main(["--source", str(root / "v1"), "--on-bad-image", "skip", "--experiment-name", experiment_name]) == 0
    (run,) = [r for r in mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
              if r.info.status == "FINISHED"]
    assert run.data.params["num_rows"] == "3" and run.data.tags["dataset.ignored_files"] == "1"
    ignored = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/hf/train/ignored_files.json")
    assert "cut.jpg" in ignored


def test_same_facts_on_this_thread_or_the_pool(catsdogs_dir, tmp_path, monkeypatch):
    """Files in the page cache are read on the calling thread, others on the pool: the same facts either way,
    bad files included."""
    files = sorted(str(p) for p in catsdogs_dir.rglob("*.jpg"))[:150]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(files[0]).read_bytes()[:500])  # a truncated JPEG
    files.append(str(cut))
    assert in_page_cache([str(cut)])  # just written: in memory (Linux can tell)
    serial = read_images(files, "structure", cache=None)
    monkeypatch.setattr("image_lineage.data.read.in_page_cache", lambda paths: False)
    pooled = read_images(files, "structure", cache=None)
    assert serial == pooled and isinstance(serial[-1], str) and all(isinstance(f, ImageFacts) for f in serial[:-1])


def test_helper_processes_read_the_same_facts_once(catsdogs_dir, tmp_path, monkeypatch):
    """Light reads shared with helper processes give what this thread gives, in order, bad files and PNG/GIF
    included; each file is read once (the read log); a missing file raises as it would here."""

    photos = sorted(catsdogs_dir.rglob("*.jpg"))[:60]
    files = [str(p) for p in photos]
    for name, data in (("cut.jpg", photos[0].read_bytes()[:500]), ("photo.png", png_of(photos[1].read_bytes())),
                       ("photo.gif", encode(photos[2].read_bytes(), "GIF")), ("empty.jpg", b""),
                       ("photo.webp", encode(photos[3].read_bytes(), "WEBP"))):  # PIL: the helper adds site-packages
        (tmp_path / name).write_bytes(data)
        files.insert(len(files) // 2, str(tmp_path / name))
    serial = read_images(files, "structure", cache=None)
    monkeypatch.setattr("image_lineage.data.read.PROCESS_MIN_SHARE", 10)
    monkeypatch.setattr("image_lineage.data.read.usable_cpus", lambda: 3)  # two helpers, this machine's CPUs aside
    log = tmp_path / "reads.log"
    monkeypatch.setenv("IMAGE_LINEAGE_READ_LOG", str(log))
    helper = HelperRead(files[:20], True, None)
    assert helper.results() == [read_light(f, True, None) for f in files[:20]] and helper.error is None
    shared = read_images(files, "structure", cache=None)
    assert shared == serial and sum(isinstance(f, str) for f in shared) == 2
    assert sorted(log.read_text().splitlines()) == sorted(files)
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        read_light_in_processes([str(tmp_path / "gone.jpg"), *files], True, None)


def test_a_helper_that_fails_leaves_its_share_to_this_process(catsdogs_dir, monkeypatch):

    files = sorted(str(p) for p in catsdogs_dir.rglob("*.jpg"))[:40]
    monkeypatch.setattr("image_lineage.data.read.HELPER_SCRIPT", "/nonexistent/image_header.py")
    helper = HelperRead(files, True, None)
    assert helper.results() == [read_light(f, True, None) for f in files]
    assert "exit 2" in helper.error and "nonexistent" in helper.error


def test_a_photo_stored_sideways_is_recorded_and_hashed_as_shown(tmp_path, coco_tiny_dir):
    """A phone photo with EXIF Orientation 6: its size as shown (height and width of the stored pixels
    swapped) and a perceptual hash within the threshold of its upright copy."""
    from test_bad_input import save_sideways

    from image_lineage.quality.pairs import DEFAULT_THRESHOLD, hamming

    photo = sorted((coco_tiny_dir / "val2017").glob("*.jpg"))[0]  # the real photos of cats and dogs are square
    save_sideways(photo, tmp_path / "phone.jpg")
    upright, sideways = read_images([str(photo), str(tmp_path / "phone.jpg")], perceptual=True, cache=None)
    with Image.open(tmp_path / "phone.jpg") as stored:
        assert stored.size == (upright.height, upright.width) != (upright.width, upright.height)
    assert (sideways.width, sideways.height) == (upright.width, upright.height)
    distance = hamming(np.array(sideways.phash[:1], dtype=np.uint64), np.array(upright.phash[:1], dtype=np.uint64))
    assert int(distance[0]) <= DEFAULT_THRESHOLD


def test_turned_hashes_are_the_hashes_the_turned_picture_gets(catsdogs_dir):
    """The whole-picture hash is pHash as defined (bit 63 - k set when the k-th of the thumbnail's 8x8 low DCT
    coefficients, row by row, is above the median of the 63 after the DC term); each of the seven turned hashes,
    made from those coefficients alone, is the whole-picture hash of the picture flipped or turned that way; the
    turn-free hash is one for all eight. A square photo: its thumbnails turn exactly with it."""
    import cv2

    from image_lineage.data.perceptual import TURN_COLUMNS, TURN_FREE, TURNS, decode_grey, perceptual_hashes, working_grey

    grey = working_grey(decode_grey(real_photo(catsdogs_dir, 3), None))
    assert grey.shape[0] == grey.shape[1]
    hashes = perceptual_hashes(grey)
    double = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(cv2.resize(double, (32, 32), interpolation=cv2.INTER_AREA))[:8, :8].ravel()
    assert hashes[0] == sum(1 << (63 - k) for k in range(64) if low[k] > np.median(low[1:]))
    moves = {"flipped": np.fliplr, "flipped upside down": np.flipud, "rotated 180": lambda g: np.rot90(g, 2),
             "rotated 90": lambda g: np.rot90(g, -1), "rotated 270": lambda g: np.rot90(g, 1),  # clockwise
             "flipped and rotated 90": np.transpose, "flipped and rotated 270": lambda g: np.rot90(g, 2).T}
    assert set(moves) == set(TURNS)
    for name, move in moves.items():
        turned = perceptual_hashes(np.ascontiguousarray(move(grey)))
        assert turned[0] == hashes[TURN_COLUMNS.start + list(TURNS).index(name)], name
        assert turned[TURN_FREE] == hashes[TURN_FREE], name
