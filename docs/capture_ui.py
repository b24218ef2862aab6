"""Redraw the README's MLflow UI pictures (docs/*.png) from the bundled data.

    .venv/bin/python docs/capture_ui.py

Starts a throwaway tracking server, logs image_dataset v1 and v2 and a small detector trained on
coco/sample for 3 epochs, then photographs the pages with headless Chromium (:func:`capture_lineage`, with
the helpers of image_lineage.tracking.ui_screenshots) and keeps a small, palette-reduced PNG of each.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import mlflow
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.model_registry import model_id_of
from image_lineage.tracking.ui_screenshots import browser_page, open_page, require_server, snap, wait_for_text, ML_VIEW
from tests.support.local_server import LocalServer

EXPERIMENT = "HW_Image_Dataset_demo"
DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
KEPT = {"dataset_drawer": "ui_dataset_profile.png", "model_metrics": "ui_model_metrics.png",
        "val_predictions": "ui_val_predictions.png"}


# the step's picture arrives after its card: wait until one is decoded
IMAGE_DRAWN = ("() => Array.from(document.querySelectorAll(\"img[src*='val_predictions']\"))"
               ".some(image => image.complete && image.naturalWidth > 0)")


def capture_lineage(tracking_uri: str, experiment_id: str, folder_run_id: str, dataset_name: str,
                    detector_run_id: str, model_name: str, model_id: str, out_dir: Path) -> dict[str, tuple[Path, str]]:
    """{page: (png path, page text)}: the Models tab, the detector's own page (each metric with the dataset
    it was measured on), a folder run's dataset drawer, the detector's ``val_predictions`` at step 1. The
    last page's text ends with the slider's range (``steps 1-N``) and the address of the image shown."""
    base = require_server(tracking_uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = {}
    with browser_page() as page:
        open_page(page, f"{base}/#/experiments/{experiment_id}/models?{ML_VIEW}", model_name)
        wait_for_text(page, "Dataset:")  # metric columns come with their dataset
        shots["models_tab"] = snap(page, out_dir, "models_tab")

        open_page(page, f"{base}/#/experiments/{experiment_id}/models/{model_id}?{ML_VIEW}", "Metrics (")
        shots["model_metrics"] = snap(page, out_dir, "model_metrics")

        open_page(page, f"{base}/#/experiments/{experiment_id}/runs/{folder_run_id}?{ML_VIEW}", f"{dataset_name} (")
        page.get_by_text(f"{dataset_name} (").first.click()  # the Datasets section's link opens the drawer
        wait_for_text(page, "Data details for")
        shots["dataset_drawer"] = snap(page, out_dir, "dataset_drawer")

        open_page(page, f"{base}/#/experiments/{experiment_id}/runs/{detector_run_id}/model-metrics?{ML_VIEW}",
                  "Model metrics")
        page.get_by_placeholder("Search metric charts").fill("val_predictions")
        slider = page.locator("[role=slider]").first
        slider.focus()
        page.keyboard.press("ArrowRight")  # the card opens below the first step: move to step 1
        images = page.locator("img[src*='val_predictions']")
        images.first.wait_for()
        source = images.first.get_attribute("src")
        page.locator("[data-component-id=fullscreen_button_chartcard]").first.click()  # the card, full size
        page.wait_for_function(IMAGE_DRAWN)
        images.last.scroll_into_view_if_needed()  # the full-size copy
        png, text = snap(page, out_dir, "val_predictions")
        steps = f"steps {slider.get_attribute('aria-valuemin')}-{slider.get_attribute('aria-valuemax')}"
        shots["val_predictions"] = (png, f"{text}\n{steps}\n{source}")
    return shots


def log_demo_runs() -> tuple[str, object]:
    for version in ("v1", "v2"):
        folder = log_folder_version(FolderVersionRequest(data_dir=str(PROJECT_ROOT / "image_dataset"), version=version,
                                                         experiment_name=EXPERIMENT))
    detector = run_finetune(FinetuneRequest(data_dir=str(PROJECT_ROOT / "coco" / "sample"), experiment_name=EXPERIMENT,
                                            model=DETECTOR, weights=None, epochs=3, image_size=160, batch_size=2,
                                            num_workers=0, preview_images=4, register_as="coco_detector_demo"))
    return folder.run_id, detector


def save_small(png: Path, destination: Path, width: int = 1000) -> None:
    """Scaled to ``width`` and reduced to a 128-colour palette: UI pages stay legible at a tenth of the bytes."""
    with Image.open(png) as image:
        image = image.convert("RGB")
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        image.quantize(128).save(destination, optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as root, LocalServer(Path(root) / "server") as server:
        os.environ["MLFLOW_TRACKING_URI"] = server.uri
        mlflow.set_tracking_uri(server.uri)
        folder_run_id, detector = log_demo_runs()
        version = mlflow.MlflowClient().get_model_version("coco_detector_demo", detector.model_version)
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        pages = capture_lineage(server.uri, experiment.experiment_id, folder_run_id, "cat_dog_dataset",
                                detector.run_id, DETECTOR, model_id_of(version), Path(root) / "shots")
        for page, name in KEPT.items():
            save_small(pages[page][0], PROJECT_ROOT / "docs" / name)
            print(f"docs/{name}: {(PROJECT_ROOT / 'docs' / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
