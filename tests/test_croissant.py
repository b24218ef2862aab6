"""croissant.json: every folder version's Croissant metadata, which mlcroissant validates and iterates on the
version downloaded with it, with the card's Responsible-AI fields and nothing invented."""

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import pytest

from entrypoints import log_folder_dataset as folder_cli
from image_lineage.cli import main as cli_main

mlcroissant = pytest.importorskip("mlcroissant", reason="the test extra installs mlcroissant")

CARD = """license: https://creativecommons.org/licenses/by/4.0/
rai:dataCollection: cat and dog photos from ../shared/data/catsdogs, copied as they are
rai:dataBiases: two classes only, of unequal size
"""


def log(data, experiment, run_name):
    assert folder_cli.main(["--data-dir", str(data), "--version", "v1", "--experiment-name", experiment,
                            "--run-name", run_name, "--max-samples-per-class", "5"]) == 0
    (run,) = mlflow.search_runs(experiment_names=[experiment], filter_string=f"run_name = '{run_name}'",
                                output_format="list")
    return run


def test_a_version_run_holds_croissant_metadata_that_mlcroissant_iterates(catsdogs_dir, tmp_path, sqlite_uri,
                                                                        experiment_name):
    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    (data / "croissant.yaml").write_text(CARD)
    run = log(data, experiment_name, "first")
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/croissant.json"))
    assert logged["version"] == f"1.0.0+{run.data.tags['dataset.digest']}"
    assert logged["license"] == "https://creativecommons.org/licenses/by/4.0/" and "rai:dataBiases" in logged
    assert "citeAs" not in logged and "datePublished" not in logged  # not in the card: left out, not invented

    folder = tmp_path / "restored"
    assert cli_main(["download", "--run-id", run.info.run_id, "--destination", str(folder), "--croissant"]) == 0
    dataset = mlcroissant.Dataset(str(folder / "croissant.json"))
    assert not dataset.metadata.issues.errors
    manifest = json.loads((folder / "manifest.json").read_text())
    images = list(dataset.records("images"))
    assert len(images) == manifest["num_images"] == len(list((data / "v1").rglob("*.jpg")))
    assert sorted(r["images/label"].decode() for r in images) == sorted(i["label"] for i in manifest["images"])
    files = list(dataset.records("files"))
    assert {(r["files/path"].decode(), r["files/sha256"].decode()) for r in files} == {
        (p.relative_to(data / "v1").as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in (data / "v1").rglob("*.jpg")}

    # the same folder logged again in another experiment: the same reports (croissant.json has no run id and
    # no date), so the run links the first one's, and downloads its croissant.json through that link
    again = log(data, f"{experiment_name}_again", "again")
    assert again.data.tags["dataset.reports_digest"] == run.data.tags["dataset.reports_digest"]
    assert cli_main(["download", "--run-id", again.info.run_id, "--destination", str(tmp_path / "again"),
                     "--croissant"]) == 0
    assert (tmp_path / "again" / "croissant.json").read_text() == (folder / "croissant.json").read_text()


def test_a_card_with_an_unknown_field_stops_before_any_run(catsdogs_dir, tmp_path, sqlite_uri, experiment_name,
                                                           caplog):
    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    (data / "croissant.yaml").write_text("licence: CC-BY-4.0\n")
    assert folder_cli.main(["--data-dir", str(data), "--version", "v1", "--experiment-name", experiment_name]) == 2
    assert f"{data / 'croissant.yaml'}: unknown field(s) licence" in caplog.text
    assert not mlflow.search_runs(experiment_names=[experiment_name], output_format="list")


def test_a_finetune_run_holds_croissant_metadata_of_its_coco_splits(bundled_coco, tmp_path, sqlite_uri,
                                                                   experiment_name):
    """COCO splits: the annotation files with their sha256, the images, and record sets of images, boxes (every
    object of the annotation file as stored) and categories that mlcroissant reads on the run's files downloaded;
    splits stored as files come back checked, and a damaged image is refused."""
    from helpers import SMALL_DETECTOR
    from image_lineage.core.errors import LineageError
    from image_lineage.flows.finetune import FinetuneRequest, run_finetune
    from image_lineage.tracking import _compat
    from image_lineage.tracking.downloads import download_version

    result = run_finetune(FinetuneRequest(data_dir=str(bundled_coco), experiment_name=experiment_name, epochs=1,
                                          **SMALL_DETECTOR))
    digest = mlflow.get_run(result.run_id).data.tags["dataset.digest"]
    folder = tmp_path / "restored"
    assert cli_main(["download", "--run-id", result.run_id, "--destination", str(folder), "--croissant"]) == 0
    dataset = mlcroissant.Dataset(str(folder / "croissant.json"))
    assert not dataset.metadata.issues.errors and dataset.metadata.version == f"1.0.0+{digest}"
    for split, stored in (("train", "train2017"), ("validation", "val2017")):
        annotation = json.loads((bundled_coco / "annotations" / f"instances_{stored}.json").read_text())
        images = list(dataset.records(f"{split}_images"))
        # the split's images (max_images=2 of the file's), each with its file_name in the annotation file
        assert sorted(r[f"{split}_images/file_name"].decode() for r in images) == sorted(
            p.name for p in (folder / split / "images").iterdir())
        assert len(images) == 2 and {r[f"{split}_images/file_name"].decode() for r in images} <= {
            i["file_name"] for i in annotation["images"]}
        boxes = list(dataset.records(f"{split}_boxes"))
        assert [(r[f"{split}_boxes/image_id"], list(r[f"{split}_boxes/bbox_xywh"])) for r in boxes] == [
            (a["image_id"], [float(v) for v in a["bbox"]]) for a in annotation["annotations"]]
    categories = [(r["categories/id"], r["categories/name"].decode()) for r in dataset.records("categories")]
    assert categories == [(c["id"], c["name"]) for c in annotation["categories"]]
    files = {f["contentUrl"]: f["sha256"] for f in json.loads((folder / "croissant.json").read_text())["distribution"]
             if f["@type"] == "cr:FileObject"}
    # the splits (2 images each: stored as files, not in packs) came back whole, each image checked
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(
        ["croissant.json", "train/instances_train2017.json", "validation/instances_val2017.json"]
        + [f"{split}/images/{p.name}" for split in ("train", "validation") for p in (folder / split / "images").iterdir()])
    for split, stored in (("train", "train2017"), ("validation", "val2017")):
        for image in (folder / split / "images").iterdir():
            assert image.read_bytes() == (bundled_coco / stored / image.name).read_bytes()
    assert files == {"train/instances_train2017.json": hashlib.sha256(
                         (bundled_coco / "annotations/instances_train2017.json").read_bytes()).hexdigest(),
                     "validation/instances_val2017.json": hashlib.sha256(
                         (bundled_coco / "annotations/instances_val2017.json").read_bytes()).hexdigest()}

    # a damaged image in the store is refused, naming it
    stored = Path(_compat.local_artifact_dir(mlflow.get_run(result.run_id).info.artifact_uri)) / "coco" / "train" / "images"
    damaged = next(stored.iterdir())
    damaged.write_bytes(damaged.read_bytes()[:-10])
    with pytest.raises(LineageError, match=f"images/{damaged.name}: the stored bytes do not match"):
        download_version(result.run_id, tmp_path / "again")


def test_a_hf_form_run_holds_croissant_metadata_of_its_splits(catsdogs_dir, tmp_path, sqlite_uri, experiment_name):
    """log_hf_dataset of split folders: croissant.json names each split's stored manifest by sha256 and its
    images as the source holds them; downloaded alone (the run stores no image), beside a copy of the splits,
    mlcroissant iterates every image with its label and every manifest record."""
    from image_lineage.flows.hf_log import HfRequest, log_hf_dataset

    data = tmp_path / "pets"
    photos = sorted(p for p in catsdogs_dir.rglob("*.jpg"))
    for i, photo in enumerate(photos):
        target = data / ("train" if i % 4 else "val") / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, target)
    (data / "croissant.yaml").write_text(CARD)
    run_id, splits = log_hf_dataset(HfRequest(source=str(data), experiment_name=experiment_name, quality_check="off"))
    digest = mlflow.get_run(run_id).data.tags["dataset.digest"]

    folder = tmp_path / "metadata"
    assert cli_main(["download", "--run-id", run_id, "--destination", str(folder), "--croissant", "--no-files"]) == 0
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "croissant.json", "hf/train/manifest.json", "hf/validation/manifest.json"]
    for split in ("train", "val"):
        shutil.copytree(data / split, folder / split)
    dataset = mlcroissant.Dataset(str(folder / "croissant.json"))
    assert not dataset.metadata.issues.errors and dataset.metadata.version == f"1.0.0+{digest}"
    logged = json.loads((folder / "croissant.json").read_text())
    assert logged["rai:dataBiases"] == "two classes only, of unequal size" and logged["name"].endswith("pets")
    for split, stored in (("train", "train"), ("validation", "val")):
        on_disk = {(p.parent.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in (data / stored).rglob("*.jpg")}
        images = list(dataset.records(f"{split}_images"))
        assert sorted(r[f"{split}_images/label"].decode() for r in images) == sorted(label for label, _ in on_disk)
        files = {(r[f"{split}_files/label"].decode(), r[f"{split}_files/sha256"].decode())
                 for r in dataset.records(f"{split}_files")}
        assert files == on_disk and len(on_disk) == len(list((data / stored).rglob("*.jpg")))
    assert {s.split for s in splits} == {"train", "validation"}


def test_a_hub_split_is_described_by_the_hubs_parquet_files(tmp_path):
    """A hub dataset's split (no files of ours): the hub's Parquet conversion, with a field for each column
    Croissant 1.0 can name and the others listed, not guessed; mlcroissant validates it."""
    import datasets

    from image_lineage.data.croissant import HubSplit, hf_metadata

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]),
                                  "caption": datasets.Value("string"),
                                  "boxes": datasets.Sequence(datasets.Value("float32"))})
    metadata = hf_metadata("pets", "a" * 64, "https://huggingface.co/datasets/someone/pets",
                           [HubSplit(split, "someone/pets", features.to_dict()) for split in ("train", "test")])
    dataset = mlcroissant.Dataset(jsonld=metadata)
    assert not dataset.metadata.issues.errors
    record_sets = {r.name: r for r in dataset.metadata.record_sets}
    assert sorted(record_sets) == ["test", "train"]
    assert [f.name for f in record_sets["train"].fields] == ["image", "label", "caption"]
    assert "boxes" in record_sets["train"].description
    parquet = [d for d in metadata["distribution"] if d["@type"] == "cr:FileSet"]
    assert [d["includes"] for d in parquet] == ["*/train/*.parquet", "*/test/*.parquet"]
    assert sum(d["@type"] == "cr:FileObject" for d in metadata["distribution"]) == 1  # one repository for both


def test_a_hf_form_of_coco_names_each_image_by_its_file_name(bundled_coco, tmp_path, sqlite_uri, experiment_name):
    """log_hf_dataset of a COCO folder: each split's images where download puts them (``<split>/images/``),
    by file_name, its manifest records labelled by the categories of their objects, its boxes and the
    categories from the annotation file (``<split>/<file>``)."""
    from image_lineage.flows.hf_log import HfRequest, log_hf_dataset

    run_id, _ = log_hf_dataset(HfRequest(source=str(bundled_coco), experiment_name=experiment_name, quality_check="off"))
    folder = tmp_path / "metadata"
    image_lineage_download(run_id, folder)
    for split, stored in (("train", "train2017"), ("validation", "val2017")):
        shutil.copytree(bundled_coco / stored, folder / split / "images")
        shutil.copy(bundled_coco / "annotations" / f"instances_{stored}.json", folder / split)
    dataset = mlcroissant.Dataset(str(folder / "croissant.json"))
    assert not dataset.metadata.issues.errors
    for split, stored in (("train", "train2017"), ("validation", "val2017")):
        annotation = json.loads((bundled_coco / "annotations" / f"instances_{stored}.json").read_text())
        names = sorted(r[f"{split}_images/file_name"].decode() for r in dataset.records(f"{split}_images"))
        assert names == sorted(p.name for p in (bundled_coco / stored).iterdir())
        files = {r[f"{split}_files/path"].decode(): r[f"{split}_files/sha256"].decode()
                 for r in dataset.records(f"{split}_files")}
        assert files == {i["file_name"]: hashlib.sha256((bundled_coco / stored / i["file_name"]).read_bytes()).hexdigest()
                         for i in annotation["images"]}
        boxes = [(r[f"{split}_boxes/image_id"], list(r[f"{split}_boxes/bbox_xywh"])) for r in dataset.records(f"{split}_boxes")]
        assert boxes == [(a["image_id"], [float(v) for v in a["bbox"]]) for a in annotation["annotations"]]
    categories = [(r["categories/id"], r["categories/name"].decode()) for r in dataset.records("categories")]
    assert categories == [(c["id"], c["name"]) for c in annotation["categories"]]


def image_lineage_download(run_id, folder):
    import image_lineage

    image_lineage.download(run_id, folder, croissant=True, files=False)
