import shutil

import mlflow
import pytest
from PIL import Image

from entrypoints import compare as compare_cli
from image_lineage.folder_dataset import FolderVersionRequest, log_folder_version
from image_lineage.screenshots import WINDOW, ScreenshotError, capture_ui
from image_lineage.train_registry import WINE_MODEL, RegistryRequest, run_registry_workflow

pytestmark = pytest.mark.skipif(not shutil.which("chromium"), reason="Chromium is not installed (.ci/run installs it)")


def test_compare_screenshots_show_runs_and_aliases(bundled_images, server_uri, experiment_name, tmp_path):
    for version in ("v1", "v2"):
        log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version=version, experiment_name=experiment_name))
    run_registry_workflow(RegistryRequest(suite="wine", experiment_name=experiment_name))
    experiment = mlflow.get_experiment_by_name(experiment_name)
    v2 = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'image_v2'",
                            output_format="list")[0]
    pages = capture_ui(server_uri, experiment.experiment_id, v2.info.run_id, WINE_MODEL, tmp_path)
    for png, _ in pages.values():
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size == WINDOW
            assert len(set(image.convert("L").getdata())) > 20  # a drawn page, not a blank canvas
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
