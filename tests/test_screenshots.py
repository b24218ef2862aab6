import shutil

import mlflow
import pytest
from helpers import SMALL_DETECTOR
from PIL import Image

from docs.capture_ui import capture_lineage
from entrypoints import compare as compare_cli
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.registry_lab import RegistryRequest, WINE_MODEL, run_registry_workflow
from image_lineage.tracking.model_registry import model_id_of
from image_lineage.tracking.ui_screenshots import WINDOW, ScreenshotError, capture_ui

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="Chromium is not installed (.ci/run installs it)")
TINY_DETECTOR = SMALL_DETECTOR["model"]


def assert_drawn(png):
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == WINDOW
        assert len(image.convert("L").getcolors(256)) > 20  # a drawn page, not a blank canvas


def test_compare_screenshots_show_runs_and_aliases(bundled_images, server_uri, experiment_name, tmp_path):
    for version in ("v1", "v2"):
        log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version=version, experiment_name=experiment_name))
    run_registry_workflow(RegistryRequest(suite="wine", experiment_name=experiment_name))
    experiment = mlflow.get_experiment_by_name(experiment_name)
    v2 = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'image_v2'",
                            output_format="list")[0]
    pages = capture_ui(server_uri, experiment.experiment_id, v2.info.run_id, WINE_MODEL, tmp_path)
    for png, _ in pages.values():
        assert_drawn(png)
    assert "image_v1" in pages["experiment_runs"][1] and "image_v2" in pages["experiment_runs"][1]
    assert "cat_dog_dataset" in pages["run_datasets"][1]
    assert all(alias in pages["registered_model"][1] for alias in ("champion", "staging", "baseline"))

    assert compare_cli.main(["--experiment", experiment_name, "--models", WINE_MODEL, "--screenshots", "true",
                             "--output-dir", str(tmp_path / "out")]) == 0
    compare_run = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'compare'",
                                     output_format="list")[0]
    logged = {f.path for f in mlflow.MlflowClient().list_artifacts(compare_run.info.run_id, "compare/screenshots")}
    assert logged == {f"compare/screenshots/{name}.png" for name in ("experiment_runs", "run_datasets", "registered_model")}


def test_screenshots_need_a_server(tmp_path):
    with pytest.raises(ScreenshotError, match="need the MLflow UI of a tracking server"):
        capture_ui("sqlite:///mlflow.db", "0", None, None, tmp_path)


def test_ui_shows_models_per_dataset_profiles_and_prediction_steps(bundled_images, bundled_coco, server_uri,
                                                                    experiment_name, tmp_path):
    folder_run = log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version="v2",
                                                         experiment_name=experiment_name))
    detector = run_finetune(FinetuneRequest(data_dir=str(bundled_coco), experiment_name=experiment_name, epochs=2,
                                            preview_images=2, register_as=f"det_{experiment_name}", **SMALL_DETECTOR))
    experiment = mlflow.get_experiment_by_name(experiment_name)
    tags = mlflow.get_run(detector.run_id).data.tags
    detector_digests = {split: tags[f"dataset.digest.{split}"][:32] for split in ("train", "validation")}
    version = mlflow.MlflowClient().get_model_version(f"det_{experiment_name}", detector.model_version)
    pages = capture_lineage(server_uri, experiment.experiment_id, folder_run.run_id, "cat_dog_dataset",
                            detector.run_id, TINY_DETECTOR, model_id_of(version), tmp_path)
    for png, _ in pages.values():
        assert_drawn(png)
    # the Models tab: the detector, its source run, metric columns grouped under the dataset they were measured on
    models = pages["models_tab"][1]
    assert TINY_DETECTOR in models and "coco_finetune" in models
    assert "Dataset:" in models and ("coco_train (#" in models or "coco_validation (#" in models)
    assert any(metric in models for metric in ("epoch_loss", "loss_classifier", "mAP"))
    # the detector's page: COCO stats measured on the validation split, losses on the training split
    metrics = pages["model_metrics"][1]
    assert f"mAP\ncoco_validation (#{detector_digests['validation']}" in metrics
    assert f"epoch_loss\ncoco_train (#{detector_digests['train']}" in metrics
    # the dataset drawer of the folder run: our profile, field by field
    drawer = pages["dataset_drawer"][1]
    for field in ("num images: 3", 'class counts: {"cat":1,"dog":2}', "image width:", "image height:", "bytes:",
                  f"digest: {folder_run.digest}", "quality status:"):
        assert field in drawer, field
    # the detector run: val_predictions with a step slider over both evaluated epochs, the step-1 image shown
    predictions = pages["val_predictions"][1]
    assert "val_predictions" in predictions and "steps 1-2" in predictions
    assert "val_predictions%2Bstep%2B1%2B" in predictions.splitlines()[-1]
