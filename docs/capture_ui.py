"""Redraw the README's MLflow UI pictures (docs/*.png) from the bundled data.

    .venv/bin/python docs/capture_ui.py

Starts a throwaway tracking server, logs image_dataset v1 and v2 and a small detector trained on
coco/sample for 3 epochs, then photographs the pages with headless Chromium (image_lineage.screenshots)
and keeps a small, palette-reduced PNG of each.
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

from image_lineage.coco_finetune import FinetuneRequest, run_finetune  # noqa: E402
from image_lineage.folder_dataset import FolderVersionRequest, log_folder_version  # noqa: E402
from image_lineage.local_server import LocalServer  # noqa: E402
from image_lineage.model_lineage import model_id_of  # noqa: E402
from image_lineage.screenshots import capture_lineage  # noqa: E402

EXPERIMENT = "HW_Image_Dataset_demo"
DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
KEPT = {"dataset_drawer": "ui_dataset_profile.png", "model_metrics": "ui_model_metrics.png",
        "val_predictions": "ui_val_predictions.png"}


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
