"""The lineage page of a model version, opened in headless Chromium: what a person sees, with the dataset folder
there and with it gone (the pictures then come from the samples the version's run stored)."""

import shutil

import mlflow
import pytest
from sklearn.dummy import DummyClassifier

import image_lineage
from image_lineage.cli import main as cli_main
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.ui_screenshots import browser_page

needs_chromium = pytest.mark.skipif(not shutil.which("chromium"), reason="Chromium is not installed (.ci/run installs it)")


def shown(page_file):
    """(the page's text, pictures drawn, the section a click on the dataset's menu entry scrolls to)."""
    with browser_page() as page:
        page.goto(page_file.resolve().as_uri())
        text = page.inner_text("body")
        drawn = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
        page.locator("nav a").nth(2).click()
        target = page.evaluate("location.hash")
        visible = page.locator(target).is_visible() if target else False
        return text, drawn, (target, visible)


@needs_chromium
def test_the_page_shows_the_model_its_runs_its_data_and_pictures(catsdogs_dir, tmp_path, sqlite_uri, experiment_name):
    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    version = log_folder_version(FolderVersionRequest(data_dir=str(data), version="v1", experiment_name=experiment_name,
                                                      max_samples_per_class=6))
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name="train_pets"):
        image_lineage.log_dataset(image_lineage.from_image_folder(data / "v1"), quality_check=False)
        mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model", registered_model_name="pets")
    mlflow.MlflowClient().set_registered_model_alias("pets", "champion", "1")
    quality = mlflow.get_run(version.run_id).data.tags["quality.status"]

    page_file = tmp_path / "lineage.html"
    assert cli_main(["lineage-page", "--model", "pets", "--version", "1", "--output", str(page_file),
                     "--index", str(tmp_path / "trace.sqlite")]) == 0
    text, drawn, (target, visible) = shown(page_file)
    assert "Lineage of pets version 1" in text and "champion" in text
    assert "train_pets" in text and "image_v1" in text  # the run that made it, and the run that logged its data
    assert "trained pets_v1" in text and "logged pets_v1" in text
    assert version.digest in text and f"leakage check\t{quality}" in text
    assert "cat: " in text and "dog: " in text
    assert drawn >= 8  # 4 samples of each class, plus the flagged pairs' pictures
    assert target == f"#data-{version.digest[:12]}" and visible

    shutil.rmtree(data)  # the folder is gone: the samples the version's run stored stand in
    assert cli_main(["lineage-page", "--model", "pets", "--version", "1", "--output", str(page_file),
                     "--index", str(tmp_path / "trace.sqlite")]) == 0
    text, drawn_from_samples, _ = shown(page_file)
    # every sample is among the run's stored samples; a flagged pair's picture that is not is named instead
    assert drawn_from_samples >= 8 and drawn_from_samples + text.count("(not at hand)") == drawn


def test_compare_logs_the_lineage_page_of_each_version_with_an_alias(bundled_images, tmp_path, sqlite_uri,
                                                                     experiment_name):
    from entrypoints import compare as compare_cli

    log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version="v2", experiment_name=experiment_name))
    mlflow.set_experiment(experiment_name)
    for _ in range(2):
        with mlflow.start_run():
            image_lineage.log_dataset(image_lineage.from_image_folder(bundled_images / "v2"), quality_check=False)
            mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model",
                                     registered_model_name=f"pets_{experiment_name}")
    mlflow.MlflowClient().set_registered_model_alias(f"pets_{experiment_name}", "champion", "1")
    assert compare_cli.main(["--experiment", experiment_name, "--models", f"pets_{experiment_name}",
                             "--output-dir", str(tmp_path)]) == 0
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'compare'",
                                output_format="list")
    pages = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "compare/lineage")}
    assert pages == {f"compare/lineage/pets_{experiment_name}_v1.html", f"compare/lineage/pets_{experiment_name}_v2.html"}
    page = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/compare/lineage/pets_{experiment_name}_v1.html")
    assert f"Lineage of pets_{experiment_name} version 1" in page and "champion" in page


def test_a_pair_across_splits_shows_each_picture_from_its_own_split(catsdogs_dir, tmp_path):
    """Two splits holding the same relative path (train/cat/x.jpg, val/cat/x.jpg, other bytes): the pair's
    pictures are each split's own file, found by the split the leakage report names."""
    import hashlib

    import pandas as pd

    from image_lineage.flows.lineage_page import DatasetSection, Pictures, pairs_html
    from image_lineage.quality.report import thumbnail_uri

    photos = sorted(catsdogs_dir.glob("cat/*.jpg"))[:2]
    sections = []
    for split, folder, photo in (("train", "train", photos[0]), ("validation", "val", photos[1])):
        (tmp_path / folder / "cat").mkdir(parents=True)
        shutil.copyfile(photo, tmp_path / folder / "cat" / "x.jpg")
        sha256 = hashlib.sha256(photo.read_bytes()).hexdigest()
        sections.append(DatasetSection(split, "training", sha256, tmp_path / folder, files=[(sha256, "cat/x.jpg", "cat")],
                                       split=split))
    sections[0].pairs = pd.DataFrame([{"path_a": "train/cat/x.jpg", "path_b": "val/cat/x.jpg", "split_a": "train",
                                       "split_b": "validation", "kind": "near_duplicate", "leakage": True}])
    pictures = {s.split: Pictures(s, client=None, tmp=tmp_path) for s in sections}
    shown = pairs_html(sections[0], pictures["train"], pictures)
    first, second = (thumbnail_uri(str(tmp_path / folder / "cat" / "x.jpg")) for folder in ("train", "val"))
    assert first != second and shown.index(first) < shown.index(second)
