"""Bad input, one row per case: what a new user may hand each entry point, and what must come back.

Every row builds its input in ``tmp_path`` from the real photos and the real COCO 2017 subset in
``../shared/data``, calls the entry point's ``main(argv)`` as ``python -m entrypoints.<name>`` would (the
tracking server is the suite's live one), and asserts the outcome:

* the exit code (0, or 2 for input the project cannot use);
* for a refusal, that the message names the file, folder or field (``names``) and says what to do (``says``),
  within seconds;
* the runs left behind: none, one FAILED run, or one FINISHED run whose record is checked (``check``).
  A refused input never leaves a FINISHED run, so nothing is half-logged.

The README's reliability section counts these rows.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mlflow
import pytest
from conftest import shared_dir
from helpers import (
    SMALL_DETECTOR, break_duplicate_annotation_id, break_duplicate_image_id, break_missing_bbox, break_missing_file_name,
    break_short_bbox,
)

from entrypoints import check_dataset, coco_finetune, compare, log_folder_dataset, log_hf_dataset
from entrypoints import main as main_entry
from support.local_server import free_port

ENTRY_POINTS = {"folder": log_folder_dataset, "hf": log_hf_dataset, "check": check_dataset,
                "finetune": coco_finetune, "compare": compare, "main": main_entry}
FINETUNE_ARGS = ["--model", SMALL_DETECTOR["model"], "--weights", "none", "--image-size", "128", "--max-images", "2",
                 "--previews", "1", "--preview-images", "1", "--epochs", "1", "--register-as", "bad_input_detector"]
SECONDS_TO_REFUSE = 30


@dataclass
class Case:
    id: str
    entry: str  # a key of ENTRY_POINTS
    build: Callable[[Path], tuple[list[str], list[str]]]  # tmp_path -> (argv, texts the message must name)
    code: int = 2
    says: tuple[str, ...] = ()  # what to do, in the message
    runs: str = "none"  # none, failed or finished
    check: Callable[[mlflow.entities.Run, Path], None] | None = None  # a finished run's record
    env: dict = field(default_factory=dict)  # {name: value}; "{tmp}" becomes tmp_path


# ---------------------------------------------------------------- inputs, from the real data


def photos(kind: str, count: int, skip: int = 0) -> list[Path]:
    return sorted((shared_dir("catsdogs") / kind).glob("*.jpg"))[skip:skip + count]


def photo_versions(root: Path, spec: dict[str, dict[str, int]] | None = None) -> Path:
    """``{"v1": {"cat": 3, "dog": 3}}`` of real photos under ``root/data``; the default is that one."""
    data = root / "data"
    for version, classes in (spec or {"v1": {"cat": 3, "dog": 3}}).items():
        for label, count in classes.items():
            folder = data / version / label
            folder.mkdir(parents=True, exist_ok=True)
            for photo in photos(label if label in ("cat", "dog") else "cat", count):
                shutil.copyfile(photo, folder / photo.name)
    return data


def small_coco(root: Path, per_split: int = 3) -> Path:
    """The first ``per_split`` images of each split of the real COCO subset, with their annotations."""
    source, target = shared_dir("coco_tiny"), root / "coco"
    (target / "annotations").mkdir(parents=True)
    for name in ("train2017", "val2017"):
        data = json.loads((source / f"annotations/instances_{name}.json").read_text())
        data["images"] = data["images"][:per_split]
        kept = {image["id"] for image in data["images"]}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in kept]
        (target / f"annotations/instances_{name}.json").write_text(json.dumps(data))
        (target / name).mkdir()
        for image in data["images"]:
            shutil.copyfile(source / name / image["file_name"], target / name / image["file_name"])
    return target


def edit_coco(root: Path, change: Callable[[dict], object], name: str = "val2017") -> tuple[Path, object]:
    """A small COCO folder whose ``name`` annotations went through ``change``; returns (folder, its result)."""
    coco = small_coco(root)
    path = coco / f"annotations/instances_{name}.json"
    data = json.loads(path.read_text())
    result = change(data)
    path.write_text(json.dumps(data))
    return coco, result


def first_file(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_file())[0]


def folder_args(data: Path, version: str = "v1", *extra: str) -> list[str]:
    return ["--data-dir", str(data), "--version", version, *extra]


# ---------------------------------------------------------------- image folder inputs


def png_header_claiming(width: int, height: int) -> bytes:
    """A whole, valid PNG (one grey row of pixel data) whose header claims ``width`` x ``height``."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" * (width // 8 + 2))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def huge_png(*extra: str):
    def build(tmp):
        data = photo_versions(tmp)
        (data / "v1/cat/huge.png").write_bytes(png_header_claiming(100_000, 100_000))
        return folder_args(data, "v1", *extra), [str(data / "v1/cat/huge.png"), "100000x100000"]
    return build


def save_sideways(photo: Path, target: Path) -> None:
    """``photo`` as a phone stores it when held sideways: pixels turned 90 degrees, EXIF Orientation 6."""
    from PIL import Image

    with Image.open(photo) as upright:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to show
        upright.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(target, exif=exif, quality=92)


def sideways_copy_in_val(tmp):
    data = photo_versions(tmp, {"train": {"dog": 3}, "val": {"cat": 3}})
    save_sideways(first_file(data / "train/dog"), data / "val/cat/phone.jpg")
    return ["--source", str(data), "--on-leakage", "fail"], []


def tiff_and_avif(tmp):
    """A two-page TIFF scan of a real photo, and the photo as AVIF (which Pillow reads, the HF builder not)."""
    from PIL import Image

    data = photo_versions(tmp)
    with Image.open(first_file(data / "v1/dog")) as photo:
        photo.save(data / "v1/dog/scan.tif", save_all=True, append_images=[photo.rotate(90)])
        photo.save(data / "v1/dog/phone.avif")
    return folder_args(data), []


def tiff_in_manifest_avif_listed(run, tmp):
    manifest = artifact_json(run, "manifest.json")
    assert "dog/scan.tif" in {image["path"] for image in manifest["images"]}
    (avif,) = [entry for entry in artifact_json(run, "ignored_files.json") if entry["path"] == "dog/phone.avif"]
    assert "convert it" in avif["reason"]


def named_pipe(tmp):
    data = photo_versions(tmp)
    os.mkfifo(data / "v1/cat/x.jpg")
    return folder_args(data), []


def glob_characters_in_path(tmp):
    data = photo_versions(tmp / "photos [2024]")
    return ["--source", str(data / "v1")], []


def split_folders_in_version(tmp):
    data = photo_versions(tmp, {"v1/train": {"cat": 2}, "v1/val": {"cat": 2}})
    return folder_args(data), [str(data / "v1")]


def zero_padded_version(tmp):
    data = photo_versions(tmp, {"v01": {"cat": 2, "dog": 2}})
    return folder_args(data, "v01"), []


def semver_without_leading_zeros(run, tmp):
    assert run.data.params["dataset_version"] == "1.0.0"


def not_a_database(tmp):
    (tmp / "runs.csv").write_text("run,accuracy\n1,0.9\n")
    return folder_args(photo_versions(tmp)), [str(tmp / "runs.csv")]


def hf_rows(count: int):
    def check(run, tmp):
        assert run.data.params["num_rows"] == str(count)
    return check


def data_dir_missing(tmp):
    return folder_args(tmp / "nowhere"), [str(tmp / "nowhere")]


def version_missing(tmp):
    return folder_args(photo_versions(tmp), "v3"), ["'v3'", "v1"]


def images_without_class_folder(tmp):
    data = photo_versions(tmp)
    for photo in (data / "v1/cat").iterdir():
        photo.rename(data / "v1" / photo.name)
    shutil.rmtree(data / "v1/cat"), shutil.rmtree(data / "v1/dog")
    return folder_args(data), [str(data / "v1")]


def only_text_files(tmp):
    data = tmp / "data"
    (data / "v1/cat").mkdir(parents=True)
    (data / "v1/cat/notes.txt").write_text("not an image")
    return folder_args(data), [str(data / "v1")]


def break_one_photo(tmp, how: str, *extra: str) -> tuple[Path, Path]:
    """A v1 of real photos where one cat is zero bytes, text, or cut short; (data dir, that file)."""
    data = photo_versions(tmp)
    victim = first_file(data / "v1/cat")
    content = {"empty": b"", "text": b"this is a text file, not a photo\n", "cut": victim.read_bytes()[:2000]}[how]
    victim.write_bytes(content)
    return data, victim


def bad_photo(how: str, entry: str, *extra: str):
    def build(tmp):
        data, victim = break_one_photo(tmp, how)
        argv = folder_args(data, "v1", *extra) if entry == "folder" else ["--source", str(data / "v1"), *extra]
        return argv, [str(victim)]
    return build


def png_named_jpg(tmp):
    data = photo_versions(tmp)
    from PIL import Image

    victim = first_file(data / "v1/cat")
    with Image.open(victim) as image:
        image.save(victim, format="PNG")
    return folder_args(data), []


def empty_class_folder(entry: str):
    def build(tmp):
        data = photo_versions(tmp)
        (data / "v1/bird").mkdir()
        return (folder_args(data) if entry == "folder" else ["--source", str(data / "v1")]), []
    return build


def hidden_class_folder(entry: str):
    def build(tmp):
        data = photo_versions(tmp, {"v1": {"cat": 3, "dog": 3, "..cat": 1}})
        return (folder_args(data) if entry == "folder" else ["--source", str(data / "v1")]), []
    return build


def link_case(kind: str, entry: str):
    def build(tmp):
        data = photo_versions(tmp)
        link = data / "v1/cat/link.jpg"
        if kind == "loop":
            (data / "v1/cat/other.jpg").symlink_to(link)
            link.symlink_to(data / "v1/cat/other.jpg")
        elif kind == "dangling":
            link.symlink_to(data / "v1/cat/deleted.jpg")
        else:  # outside the data folder
            link.symlink_to(photos("cat", 1, skip=20)[0])
        return (folder_args(data) if entry == "folder" else ["--source", str(data / "v1")]), [str(link)]
    return build


def unsafe_class_name(entry: str):
    def build(tmp):
        data = photo_versions(tmp, {"v1": {"cat": 2, "dog": 2}})
        (data / "v1/dog").rename(data / "v1/hot dog")
        return (folder_args(data) if entry == "folder" else ["--source", str(data / "v1")]), ["hot dog"]
    return build


def folder_beside_versions(tmp):
    data = photo_versions(tmp)  # "pool" sorts before "v1": it was taken for v1's previous version
    (data / "pool").mkdir()
    shutil.copyfile(photos("cat", 1, skip=30)[0], data / "pool/spare.jpg")
    return folder_args(data), []


def unsafe_earlier_version(tmp):
    data = photo_versions(tmp, {"v0": {"cat": 2}, "v1": {"cat": 3, "dog": 3}})
    (data / "v0/cat").rename(data / "v0/cat photos")
    return folder_args(data), []


def nested_folder(tmp):
    data = photo_versions(tmp)
    (data / "v1/cat/kittens").mkdir()
    shutil.copyfile(photos("cat", 1, skip=30)[0], data / "v1/cat/kittens/k.jpg")
    return folder_args(data), []


def same_photo_in_two_classes(tmp):
    data = photo_versions(tmp)
    photo = first_file(data / "v1/cat")
    shutil.copyfile(photo, data / "v1/dog" / photo.name)
    return folder_args(data, "v1", "--on-leakage", "fail"), []  # one split: a conflict, not leakage


def train_val_copy(tmp):
    data = photo_versions(tmp, {"train": {"cat": 3, "dog": 3}, "val": {"cat": 0}})
    (data / "val/cat").rmdir()
    shutil.copytree(data / "train/dog", data / "val/dog")
    return ["--source", str(data), "--on-leakage", "fail"], []


def one_pixel_pictures(tmp):
    """A 1x1 red PNG in train/cat and a 1x1 blue one in val/dog, beside real photos."""
    from PIL import Image

    data = photo_versions(tmp, {"train": {"cat": 2}, "val": {"dog": 2}})
    Image.new("RGB", (1, 1), (255, 0, 0)).save(data / "train/cat/dot.png")
    Image.new("RGB", (1, 1), (0, 0, 255)).save(data / "val/dog/dot.png")
    return ["--source", str(data), "--on-leakage", "fail"], []


def nothing_flagged_two_set_aside(run, tmp):
    assert run.data.tags["quality.status"] == "clean"
    assert run.data.metrics["quality/set_aside_images"] == 2


# ---------------------------------------------------------------- COCO inputs


def coco_edit(change: Callable[[dict], object], entry: str = "hf", *extra: str):
    def build(tmp):
        coco, named = edit_coco(tmp, change)
        argv = ["--data-dir", str(coco), *FINETUNE_ARGS] if entry == "finetune" else ["--source", str(coco)]
        return [*argv, *extra], [str(coco / "annotations/instances_val2017.json"), *([named] if named else [])]
    return build


def unknown_category(data):
    data["annotations"][0]["category_id"] = 4242
    return "4242"


def no_annotations_key(data):
    del data["annotations"]
    return "annotations"


def negative_width_box(data):
    data["annotations"][0]["bbox"][2] = -5
    return None


def no_area_no_iscrowd(data):
    for annotation in data["annotations"]:
        annotation.pop("area")
        annotation.pop("iscrowd")


def no_image_sizes(data):
    for image in data["images"]:
        image.pop("width")
        image.pop("height")


def string_image_ids(data):
    ids = {image["id"]: f"{image['id']:012d}" for image in data["images"]}
    for image in data["images"]:
        image["id"] = ids[image["id"]]
    for annotation in data["annotations"]:
        annotation["image_id"] = ids[annotation["image_id"]]
    return f"id {next(iter(ids.values()))!r}"


def same_category_name(data):
    first, second = data["categories"][:2]
    second["name"] = first["name"]
    return f"share the name {first['name']!r}"


def absolute_file_name(data):
    data["images"][0]["file_name"] = "/etc/hostname"
    return "'/etc/hostname'"


def annotated_before_a_resize(data):
    """Every image's listed size doubled, as an annotation file made before the photos were halved."""
    image = min(data["images"], key=lambda entry: entry["id"])  # the first the message names
    for entry in data["images"]:
        entry["width"], entry["height"] = entry["width"] * 2, entry["height"] * 2
    return f"{image['width']}x{image['height']}"


def one_image_annotated_before_a_resize(data):
    image = min(data["images"], key=lambda entry: entry["id"])
    image["width"], image["height"] = image["width"] * 2, image["height"] * 2
    return image["file_name"]


def size_mismatch_listed(run, tmp):
    data = json.loads((tmp / "coco/annotations/instances_val2017.json").read_text())
    first = min(data["images"], key=lambda entry: entry["id"])
    (entry,) = artifact_json(run, "hf/validation/ignored_files.json")
    assert entry["path"] == f"val2017/{first['file_name']}" and "annotation file says" in entry["reason"]
    assert run.data.tags["dataset.ignored_files"] == "1"


def filled_in(*fields: str, per: str):
    """The validation report says ``fields`` were filled in for every one of its ``per`` (annotations, images)."""
    def check(run, tmp):
        report = artifact_json(run, "hf/validation/validation_report.json")
        expected = dict.fromkeys(fields, report[per])
        assert report["filled_in"] == expected, report
        if "size_from_file" in expected:
            features = artifact_json(run, "hf/validation/features.json")
            assert features["num_rows"] == 3
    return check


def not_json(tmp):
    coco = small_coco(tmp)
    (coco / "annotations/instances_val2017.json").write_text("{ this is not json")
    return ["--source", str(coco)], [str(coco / "annotations/instances_val2017.json")]


def coco_image_missing(entry: str):
    def build(tmp):
        coco = small_coco(tmp)
        gone = first_file(coco / "val2017")
        gone.unlink()
        argv = ["--data-dir", str(coco), *FINETUNE_ARGS] if entry == "finetune" else ["--source", str(coco)]
        return argv, [gone.name]
    return build


def coco_bad_image(how: str, entry: str, *extra: str):
    def build(tmp):
        coco = small_coco(tmp)
        victim = first_file(coco / "val2017")
        victim.write_bytes(b"text, not a JPEG\n" if how == "text" else victim.read_bytes()[:300])
        argv = ["--data-dir", str(coco), *FINETUNE_ARGS] if entry == "finetune" else ["--source", str(coco)]
        return [*argv, *extra], [str(victim)]
    return build


def train_folder_without_annotations(*extra: str):
    def build(tmp):
        coco = small_coco(tmp)
        (coco / "annotations/instances_train2017.json").unlink()
        return ["--source", str(coco), *extra], ([str(coco / "train2017")] if extra else [])
    return build


def no_coco_folder(tmp):
    return ["--data-dir", str(tmp / "nowhere"), *FINETUNE_ARGS], [str(tmp / "nowhere")]


def unknown_train_split(tmp):
    return ["--data-dir", str(small_coco(tmp)), "--train-split", "nothing", *FINETUNE_ARGS], ["'nothing'"]


def no_images_listed(tmp):
    coco, _ = edit_coco(tmp, lambda data: data.update(images=[], annotations=[]))
    return ["--data-dir", str(coco), *FINETUNE_ARGS], ["instances_val2017.json"]


# ---------------------------------------------------------------- other inputs


def unknown_source(tmp):
    return ["--source", str(tmp / "nowhere")], [str(tmp / "nowhere")]


def dbfs_location(tmp):
    return ["--source", "dbfs:/data/pets/v2"], ["dbfs:/data/pets/v2"]


def bundled(*extra: str):
    def build(tmp):
        return ["--source", str(photo_versions(tmp) / "v1"), *extra], []
    return build


def bundled_folder(tmp):
    return folder_args(photo_versions(tmp)), []


def many_classes(entry: str, count: int = 600):
    """ImageNet-style class folders (``n01440764``...), one picture of noise each: the class list is past
    what an MLflow param holds."""
    def build(tmp):
        import numpy as np
        from PIL import Image

        noise = np.random.default_rng(0)
        for index in range(count):
            folder = tmp / "data/v1" / f"n{1440764 + index:08d}"
            folder.mkdir(parents=True)
            Image.fromarray(noise.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "a.png")
        data = tmp / "data"
        return (folder_args(data) if entry == "folder" else ["--source", str(data / "v1")]), []
    return build


# ---------------------------------------------------------------- checks of finished runs


def artifact_json(run, path):
    return json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path)).read_text())


def ignored_lists(*paths: str, where: str = "ignored_files.json"):
    def check(run, tmp):
        listed = {item["path"] for item in artifact_json(run, where)}
        assert set(paths) <= listed, listed
        assert run.data.tags["dataset.ignored_files"] == str(len(listed))
    return check


def long_params_parse(*names: str):
    """Every param parses as JSON; each of ``names`` points to an artifact that holds the whole value."""
    def check(run, tmp):
        classes = sorted(p.name for p in (tmp / "data/v1").iterdir())
        for name in names:
            pointer = json.loads(run.data.params[name])
            whole = artifact_json(run, pointer["artifact"])
            assert pointer["length"] == len(json.dumps(whole))
            if name == "class_names":
                assert whole == classes
        for name in ("class_names", "features", "splits"):
            if name in run.data.params:
                json.loads(run.data.params[name])
    return check


def hf_labels_match_params(run, tmp):
    """Item 4: label i of the dataset decodes to the i-th logged class name."""
    features = artifact_json(run, "hf/train/features.json")["features"]
    assert json.loads(run.data.params["class_names"]) == features["label"]["names"] == ["cat", "dog"]
    assert run.data.params["num_classes"] == "2"
    assert "bird" in {item["path"] for item in artifact_json(run, "hf/train/ignored_files.json")}


def folder_counts_empty_class(run, tmp):
    assert json.loads(run.data.params["class_names"]) == ["cat", "dog"]
    assert run.data.metrics["class_bird_count"] == 0


def diff_passes_over(version: str, base: str | None):
    def check(run, tmp):
        diff = artifact_json(run, "diff.json")
        assert diff["old_version"] == base
        assert [item["version"] for item in diff["skipped_versions"]] == [version]
    return check


def skipped_folder_tagged(run, tmp, params=True):
    if params:
        assert json.loads(run.data.params["splits"]) == ["validation"]
    assert json.loads(run.data.tags["dataset.skipped_folders"]) == [
        {"path": "train2017", "reason": "no annotations/instances_train2017.json"}]


def box_in_validation_report(run, tmp):
    report = artifact_json(run, "hf/validation/validation_report.json")
    assert "negative" in json.dumps(report) or "zero" in json.dumps(report), report


def label_conflict_recorded(run, tmp):
    assert run.data.tags["quality.status"] == "duplicates"
    assert run.data.metrics["quality/label_conflicts"] == 1


def format_recorded(run, tmp):
    manifest = artifact_json(run, "manifest.json")
    assert manifest["num_images"] == 6


def finished_in_new_folder(run, tmp):
    assert (tmp / "new/store/mlflow.db").is_file()


# ---------------------------------------------------------------- the table

SKIP = ("--on-bad-image", "skip")

CASES = [
    # image folders: where the data is
    Case("folder/data_dir missing", "folder", data_dir_missing, says=("-P data_dir",)),
    Case("folder/version missing", "folder", version_missing, says=("versions found",)),
    Case("folder/images not in class folders", "folder", images_without_class_folder, says=("<class>",)),
    Case("folder/only text files", "folder", only_text_files, says=("no readable images",)),
    Case("hf/unknown source", "hf", unknown_source, says=("image folder", "COCO folder", "hub:")),
    Case("hf/dbfs: location not mounted", "hf", dbfs_location, says=("/dbfs/data/pets/v2", "IMAGE_LINEAGE_DBFS_MOUNT")),
    # image folders: bad files
    Case("folder/zero-byte image", "folder", bad_photo("empty", "folder"), says=("-P on_bad_image=skip",)),
    Case("hf/zero-byte image", "hf", bad_photo("empty", "hf"), says=("-P on_bad_image=skip",)),
    Case("folder/zero-byte image skipped", "folder", bad_photo("empty", "folder", *SKIP), code=0, runs="finished",
         check=lambda run, tmp: ignored_lists(f"cat/{first_file(tmp / 'data/v1/cat').name}")(run, tmp)),
    Case("hf/zero-byte image skipped", "hf", bad_photo("empty", "hf", *SKIP), code=0, runs="finished",
         check=lambda run, tmp: ignored_lists(f"cat/{first_file(tmp / 'data/v1/cat').name}",
                                              where="hf/train/ignored_files.json")(run, tmp)),
    Case("folder/text file named .jpg", "folder", bad_photo("text", "folder"), says=("on_bad_image=skip",)),
    Case("hf/text file named .jpg", "hf", bad_photo("text", "hf"), says=("on_bad_image=skip",)),
    Case("folder/truncated JPEG", "folder", bad_photo("cut", "folder"), says=("truncated",)),
    Case("hf/truncated JPEG", "hf", bad_photo("cut", "hf"), says=("truncated",)),
    Case("folder/PNG bytes in a .jpg file", "folder", png_named_jpg, code=0, runs="finished", check=format_recorded),
    # image folders: odd folders (items 4, 5, 11 of the sweep)
    Case("hf/empty class folder", "hf", empty_class_folder("hf"), code=0, runs="finished", check=hf_labels_match_params),
    Case("folder/empty class folder", "folder", empty_class_folder("folder"), code=0, runs="finished",
         check=folder_counts_empty_class),
    Case("folder/hidden class folder", "folder", hidden_class_folder("folder"), code=0, runs="finished",
         check=ignored_lists("..cat")),
    Case("hf/hidden class folder", "hf", hidden_class_folder("hf"), code=0, runs="finished",
         check=ignored_lists("..cat", where="hf/train/ignored_files.json")),
    Case("folder/nested folder in a class", "folder", nested_folder, code=0, runs="finished",
         check=ignored_lists("cat/kittens")),
    Case("folder/unsafe class name", "folder", unsafe_class_name("folder"), says=("Rename it",)),
    Case("hf/unsafe class name", "hf", unsafe_class_name("hf"), says=("Rename it",)),
    Case("folder/non-version folder beside the versions", "folder", folder_beside_versions, code=0, runs="finished",
         check=diff_passes_over("pool", None)),
    Case("folder/earlier version with an unsafe class name", "folder", unsafe_earlier_version, code=0,
         runs="finished", check=diff_passes_over("v0", None)),
    # the second trust sweep (issue 25)
    Case("folder/PNG header claiming 100,000x100,000", "folder", huge_png(), says=("on_bad_image=skip",)),
    Case("folder/PNG header claiming 100,000x100,000, skipped", "folder", huge_png(*SKIP), code=0, runs="finished",
         check=ignored_lists("cat/huge.png")),
    Case("check/a phone photo stored sideways (EXIF 6), its upright copy in train", "check", sideways_copy_in_val,
         runs="failed"),
    Case("folder/multi-page TIFF and an AVIF photo", "folder", tiff_and_avif, code=0, runs="finished",
         check=tiff_in_manifest_avif_listed),
    Case("folder/named pipe called x.jpg", "folder", named_pipe, code=0, runs="finished", check=ignored_lists("cat/x.jpg")),
    Case("hf/folder path with glob characters", "hf", glob_characters_in_path, code=0, runs="finished",
         check=hf_rows(6)),
    Case("folder/split folders inside a version", "folder", split_folders_in_version, says=("one level too deep",)),
    Case("folder/version folder v01", "folder", zero_padded_version, code=0, runs="finished",
         check=semver_without_leading_zeros),
    Case("hf/hub: without a name", "hf", lambda tmp: (["--source", "hub:"], ["'hub:'"]), says=("hub:<owner>/<name>",)),
    Case("folder/sqlite URI naming a CSV file", "folder", not_a_database,
         env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/runs.csv"}, says=("not a SQLite database",)),
    Case("main/image_dir that does not exist", "main", lambda tmp: (["--image-dir", str(tmp / "nowhere")], ["image_dir"]),
         says=("-P image_dir=",)),
    # symbolic links (item 8)
    Case("folder/symlink loop", "folder", link_case("loop", "folder"), says=("remove the link",)),
    Case("hf/symlink loop", "hf", link_case("loop", "hf"), says=("remove the link",)),
    Case("folder/dangling symlink", "folder", link_case("dangling", "folder"), says=("does not exist", "remove the link")),
    Case("hf/dangling symlink", "hf", link_case("dangling", "hf"), says=("does not exist", "remove the link")),
    Case("folder/symlink out of data_dir", "folder", link_case("outside", "folder"), says=("Copy the file",)),
    # parameters
    Case("folder/600 class folders", "folder", many_classes("folder"), code=0, runs="finished",
         check=long_params_parse("class_names")),
    Case("hf/600 class folders", "hf", many_classes("hf"), code=0, runs="finished",
         check=long_params_parse("class_names", "features")),
    Case("folder/negative max_samples_per_class", "folder",
         lambda tmp: (folder_args(photo_versions(tmp), "v1", "--max-samples-per-class", "-1"), ["-1"]),
         says=("whole number",)),
    Case("folder/version name without a semver", "folder",
         lambda tmp: (folder_args(photo_versions(tmp, {"latest": {"cat": 2}}), "latest"), ["'latest'"]),
         says=("-P dataset_semver",)),
    Case("hf/split not present", "hf", bundled("--split", "test"), says=("splits present",)),
    Case("hf/targets column missing", "hf", bundled("--targets", "species"), says=("columns",)),
    Case("hf/unknown on_bad_image", "hf", bundled("--on-bad-image", "ignore"), says=("invalid choice",)),
    Case("hf/hub dataset while offline", "hf", lambda tmp: (["--source", "hub:no-such/dataset"], ["no-such/dataset"])),
    # leakage gate
    Case("folder/same photo in two classes", "folder", same_photo_in_two_classes, code=0, runs="finished",
         check=label_conflict_recorded),
    Case("check/train photos copied into val, on_leakage=fail", "check", train_val_copy, runs="failed"),
    Case("check/two 1x1 pictures of other colours, on_leakage=fail", "check", one_pixel_pictures, code=0,
         runs="finished", check=nothing_flagged_two_set_aside),
    # COCO annotation files (items 1, 7)
    Case("hf/COCO duplicate image ids", "hf", coco_edit(break_duplicate_image_id)),
    Case("finetune/COCO duplicate image ids", "finetune", coco_edit(break_duplicate_image_id, "finetune")),
    Case("check/COCO duplicate image ids", "check", coco_edit(break_duplicate_image_id, "check")),
    Case("hf/COCO duplicate annotation ids", "hf", coco_edit(break_duplicate_annotation_id)),
    Case("hf/COCO annotation without bbox", "hf", coco_edit(break_missing_bbox), says=("bbox",)),
    Case("finetune/COCO image without file_name", "finetune", coco_edit(break_missing_file_name, "finetune"),
         says=("file_name",)),
    Case("hf/COCO bbox of three numbers", "hf", coco_edit(break_short_bbox), says=("four numbers",)),
    Case("hf/COCO unknown category", "hf", coco_edit(unknown_category), says=("categories",)),
    Case("hf/COCO without annotations list", "hf", coco_edit(no_annotations_key), says=("missing top-level",)),
    Case("hf/COCO file that is not JSON", "hf", not_json, says=("not valid JSON",)),
    # COCO from other exporters, and sizes that disagree with the files (issue 25, items 3 and 11)
    Case("hf/COCO without area and iscrowd", "hf", coco_edit(no_area_no_iscrowd), code=0, runs="finished",
         check=filled_in("area_from_bbox", "iscrowd_default_0", per="annotations")),
    Case("hf/COCO images without width and height", "hf", coco_edit(no_image_sizes), code=0, runs="finished",
         check=filled_in("size_from_file", per="images")),
    Case("hf/COCO image ids as strings", "hf", coco_edit(string_image_ids), says=("integers",)),
    Case("hf/COCO two categories with one name", "hf", coco_edit(same_category_name), says=("own name",)),
    Case("hf/COCO file_name outside the folder", "hf", coco_edit(absolute_file_name), says=("relative",)),
    Case("hf/COCO sizes twice the files'", "hf", coco_edit(annotated_before_a_resize), says=("on_bad_image=skip",)),
    Case("hf/COCO one image's size twice its file's, skipped", "hf",
         coco_edit(one_image_annotated_before_a_resize, "hf", *SKIP), code=0, runs="finished", check=size_mismatch_listed),
    Case("finetune/COCO sizes twice the files'", "finetune", coco_edit(annotated_before_a_resize, "finetune"),
         says=("on_bad_image=skip", "scale the boxes")),
    # COCO images and folders (items 2, 3)
    Case("hf/COCO image file missing", "hf", coco_image_missing("hf"), says=("missing",)),
    Case("finetune/COCO image file missing", "finetune", coco_image_missing("finetune"), says=("missing",)),
    Case("hf/COCO text file named .jpg", "hf", coco_bad_image("text", "hf"), says=("on_bad_image=skip",)),
    Case("hf/COCO text file named .jpg, skipped", "hf", coco_bad_image("text", "hf", *SKIP), code=0, runs="finished",
         check=lambda run, tmp: ignored_lists(f"val2017/{first_file(tmp / 'coco/val2017').name}",
                                              where="hf/validation/ignored_files.json")(run, tmp)),
    Case("finetune/COCO truncated JPEG", "finetune", coco_bad_image("cut", "finetune"), says=("on_bad_image=skip",)),
    Case("hf/COCO box of negative width", "hf", coco_edit(negative_width_box), code=0, runs="finished",
         check=box_in_validation_report),
    Case("hf/COCO image folder without annotations, split=all", "hf", train_folder_without_annotations(), code=0,
         runs="finished", check=skipped_folder_tagged),
    Case("check/COCO image folder without annotations", "check", train_folder_without_annotations(), code=0,
         runs="finished", check=lambda run, tmp: skipped_folder_tagged(run, tmp, params=False)),
    Case("hf/COCO image folder without annotations, asked for", "hf", train_folder_without_annotations("--split", "train"),
         says=("instances_train2017.json", "Add the annotation file")),
    Case("finetune/no COCO folder", "finetune", no_coco_folder, says=("not a COCO folder",)),
    Case("finetune/unknown train split", "finetune", unknown_train_split),
    Case("finetune/annotation file lists no images", "finetune", no_images_listed, says=("empty",)),
    # tracking URIs (items 9, 10)
    Case("folder/sqlite store in a folder nobody can write", "folder", bundled_folder,
         env={"MLFLOW_TRACKING_URI": "sqlite:////proc/lineage.db"}, says=("/proc", "not writable", "sqlite:///")),
    Case("folder/mistyped tracking scheme", "folder", bundled_folder,
         env={"MLFLOW_TRACKING_URI": "sqlit:///{tmp}/mlflow.db"}, says=("sqlit:", "sqlite:///", "http")),
    Case("folder/tracking server not running", "folder", bundled_folder,
         env={"MLFLOW_TRACKING_URI": "{free_url}"}, says=("not reachable", "mlflow server")),
    Case("folder/sqlite store in a folder not made yet", "folder", bundled_folder,
         env={"MLFLOW_TRACKING_URI": "sqlite:///{tmp}/new/store/mlflow.db"}, code=0, runs="finished",
         check=finished_in_new_folder),
    # compare
    Case("compare/experiment that does not exist", "compare",
         lambda tmp: (["--output-dir", str(tmp / "out")], []), says=("experiment",)),
]


def call(entry: str, argv: list[str]) -> int:
    """``python -m entrypoints.<entry> argv`` in this process; argparse's exit becomes its code."""
    try:
        return ENTRY_POINTS[entry].main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, tmp_path, server_uri, experiment_name, monkeypatch, caplog, capsys):
    argv, names = case.build(tmp_path)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path, free_url=f"http://127.0.0.1:{free_port()}"))
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    code = call(case.entry, [*argv, "--experiment-name", experiment_name])
    elapsed = time.monotonic() - started
    message = caplog.text + capsys.readouterr().err
    assert code == case.code, message[-3000:]
    if code:
        assert elapsed < SECONDS_TO_REFUSE, f"refused after {elapsed:.0f} s"
        for text in (*names, *case.says):
            assert text in message, f"{text!r} not in: {message[-2000:]}"
    client = mlflow.MlflowClient(mlflow.get_tracking_uri())  # where the entry point logged, if anywhere
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if case.runs == "none":
        assert not runs, [r.info.status for r in runs]
    else:
        (run,) = runs
        assert run.info.status == case.runs.upper()
        if case.check:
            case.check(run, tmp_path)
    mlflow.set_tracking_uri(server_uri)
    os.environ.pop("MLFLOW_RUN_ID", None)


def test_the_reliability_page_counts_the_rows():
    from tests_paths import PROJECT_ROOT

    assert f"holds **{len(CASES)} rows**" in (PROJECT_ROOT / "docs" / "reliability.md").read_text()
