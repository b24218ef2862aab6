"""Detection data, evaluator and fine-tuning runs (CPU, seconds each: weights=none, mobilenet 320, tiny images)."""

import json
import os
import shutil
import subprocess
import sys

import mlflow
import pytest
import torch
from pycocotools.coco import COCO

from image_lineage.core.errors import DatasetError
from image_lineage.data.coco.hf_form import coco_to_hf
from image_lineage.data.coco.index import CategoryMapping, validation_report, xywh_to_xyxy
from image_lineage.data.coco.index import index_split
from image_lineage.data.coco.layout import find_coco_splits
from image_lineage.flows.finetune import FinetuneRequest, run_finetune
from image_lineage.tracking.model_registry import model_id_of, models_measured_on
from image_lineage.training.detection.coco_data import CocoDetectionDataset, HfDetectionDataset, clip_boxes_xyxy
from image_lineage.training.detection.detectors import build_model
from image_lineage.training.detection.engine import COCO_METRICS, EVALUATORS, coco_bbox_stats, coco_ground_truth, outputs_to_coco_results, split_undefined
from helpers import SMALL_DETECTOR, artifact_paths
from tests_paths import PROJECT_ROOT



def split_index(folder, split="validation", max_images=None):
    return index_split(find_coco_splits(folder)[split], max_images)


def test_targets_equal_pycocotools_boxes_in_xyxy(coco_tiny_dir):
    index = split_index(coco_tiny_dir, max_images=20)
    dataset = CocoDetectionDataset(index)
    reference = COCO(str(index.split.annotation_file))
    for position in range(len(dataset)):
        image, target = dataset[position]
        info = reference.imgs[int(target["image_id"])]
        assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.uint8
        anns = [a for a in reference.loadAnns(reference.getAnnIds(imgIds=info["id"], iscrowd=False))
                if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        anns.sort(key=lambda a: a["id"])
        expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        expected[:, 0::2] = expected[:, 0::2].clamp(0, info["width"])
        expected[:, 1::2] = expected[:, 1::2].clamp(0, info["height"])
        assert torch.allclose(target["boxes"], expected, atol=1e-3)
        names = [dataset.mapping.names[label - 1] for label in target["labels"].tolist()]
        assert names == [reference.cats[a["category_id"]]["name"] for a in anns]


def test_hf_input_gives_the_same_targets(bundled_coco):
    index = split_index(bundled_coco, "train")
    mapping = CategoryMapping.from_index(index)
    from_coco, from_hf = CocoDetectionDataset(index, mapping), HfDetectionDataset(coco_to_hf(index), mapping)
    for position in range(len(from_coco)):
        (image_a, target_a), (image_b, target_b) = from_coco[position], from_hf[position]
        assert torch.equal(image_a, image_b)
        for key in ("boxes", "labels", "image_id"):
            assert torch.allclose(target_a[key].float(), target_b[key].float(), atol=1e-3), key
        # the hub form (detection-datasets/coco) stores area as int64: the same areas, rounded
        assert torch.equal(target_a["area"].round(), target_b["area"]), "area"


def test_category_mapping_round_trips(bundled_coco):
    mapping = CategoryMapping.from_index(split_index(bundled_coco))
    assert mapping.coco_ids == (1, 3, 7) and mapping.num_classes == 4
    assert [mapping.label_of(i) for i in (1, 3, 7)] == [1, 2, 3]
    assert CategoryMapping.from_json(mapping.to_json()) == mapping
    assert json.loads(mapping.to_json())["2"] == {"coco_id": 3, "name": "square"}


def test_crowd_and_degenerate_boxes_left_out():
    boxes = clip_boxes_xyxy(torch.tensor([xywh_to_xyxy(b) for b in [[10.0, 10, 5, 5], [90, 5, 20, 10]]]), width=100, height=50)
    assert boxes.tolist() == [[10, 10, 15, 15], [90, 5, 100, 15]]
    from image_lineage.training.detection.coco_data import build_target

    target = build_target(1, 100, 50, [[1, 1, 5, 5], [2, 2, 0, 4], [3, 3, 4, 4]], [1, 2, 3], [25, 0, 16], [False, False, True])
    assert target["labels"].tolist() == [1] and target["boxes"].shape == (1, 4)


def test_evaluator_gives_map_one_for_ground_truth(bundled_coco):
    index = split_index(bundled_coco, "train")
    mapping = CategoryMapping.from_index(index)
    dataset = CocoDetectionDataset(index, mapping)
    outputs, ids = [], []
    for position in range(len(dataset)):
        _, target = dataset[position]
        outputs.append({"boxes": target["boxes"], "labels": target["labels"], "scores": torch.ones(len(target["labels"]))})
        ids.append(int(target["image_id"]))
    results = outputs_to_coco_results(outputs, ids, mapping)
    for evaluator in EVALUATORS:
        gt = coco_ground_truth(index, evaluator)
        metrics = coco_bbox_stats(gt, results, ids, evaluator)
        assert metrics["mAP"] == pytest.approx(1.0) and metrics["mAP_50"] == pytest.approx(1.0)
        shifted = [dict(r, bbox=[r["bbox"][0] + 30, *r["bbox"][1:]]) for r in results]
        assert coco_bbox_stats(gt, shifted, ids, evaluator)["mAP"] < 0.5
        empty = coco_bbox_stats(gt, [], ids, evaluator)  # no detections: zeros, not an error
        assert empty["mAP"] == 0 and empty["AR_100"] == 0


def jittered_detections(coco_json: dict, seed: int = 7) -> list[dict]:
    """Fixed detections: ground-truth boxes moved by a few pixels at unrounded float positions, random
    scores, plus false positives; what a real detector's output looks like to COCOeval."""
    import random

    rng = random.Random(seed)
    category_ids = [c["id"] for c in coco_json["categories"]]
    detections = []
    for a in coco_json["annotations"]:
        x, y, w, h = a["bbox"]
        detections.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": rng.random(),
                           "bbox": [x + rng.gauss(0, 2.3), y + rng.gauss(0, 2.3), w * rng.uniform(0.9, 1.1), h * rng.uniform(0.9, 1.1)]})
        if rng.random() < 0.3:
            detections.append({"image_id": a["image_id"], "category_id": rng.choice(category_ids), "score": rng.random() / 2,
                               "bbox": [rng.uniform(0, 300), rng.uniform(0, 300), rng.uniform(5, 90), rng.uniform(5, 90)]})
    return detections


def test_all_12_stats_equal_plain_pycocotools_on_fixed_detections(coco_tiny_dir):
    """Reference: pycocotools straight from the annotation file, the detections as they are."""
    import contextlib
    import io
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotation_file = coco_tiny_dir / "annotations/instances_val2017.json"
    detections = jittered_detections(json.loads(annotation_file.read_text()))
    with contextlib.redirect_stdout(io.StringIO()):
        reference_gt = COCO(str(annotation_file))
        reference = COCOeval(reference_gt, reference_gt.loadRes(detections), iouType="bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    index = index_split(find_coco_splits(coco_tiny_dir)["validation"])
    ids = [image["id"] for image in index.images]
    for evaluator in EVALUATORS:
        ours = coco_bbox_stats(coco_ground_truth(index, evaluator), detections, ids, evaluator)
        assert list(ours) == list(COCO_METRICS)
        for (name, value), expected in zip(ours.items(), reference.stats):
            assert abs(value - expected) <= 1e-9, (evaluator, name, value, expected)


def test_boxes_are_not_rounded_before_cocoeval(bundled_coco):
    index = split_index(bundled_coco, "train")
    output = {"boxes": torch.tensor([[10.123456, 20.987654, 50.5, 60.25]]), "labels": torch.tensor([1]),
              "scores": torch.tensor([0.9])}
    (result,) = outputs_to_coco_results([output], [index.images[0]["id"]], CategoryMapping.from_index(index))
    assert result["bbox"][0] == pytest.approx(10.123456, abs=1e-6) and result["bbox"][3] == pytest.approx(60.25 - 20.987654, abs=1e-5)


def test_undefined_stats_are_named_not_logged_as_zero():
    stats = dict.fromkeys(COCO_METRICS, 0.25) | {"mAP_small": -1.0, "AR_small": -1.0}
    defined, undefined = split_undefined(stats)
    assert undefined == ["mAP_small", "AR_small"] and "mAP_small" not in defined and defined["mAP"] == 0.25


def test_validation_report_flags_boxes_and_empty_images(bundled_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    path = root / "annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["bbox"][2] = 0  # zero width
    data["annotations"][1]["bbox"][0] = 155  # runs past the 160-pixel edge
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 503]
    path.write_text(json.dumps(data))
    index = split_index(root)
    report = validation_report(index)
    assert report["zero_area_boxes"] == [data["annotations"][0]["id"]]
    assert report["out_of_bounds_boxes"] == [data["annotations"][1]["id"]]
    assert report["images_without_annotations"] == [503]
    _, target = CocoDetectionDataset(index)[0]  # the zero-width box is not a training target
    assert data["annotations"][0]["image_id"] == 500 and (target["boxes"][:, 2] > target["boxes"][:, 0]).all()


def test_corrupt_image_error_names_the_file(bundled_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    (root / "val2017/000000000501.jpg").write_bytes(b"not a jpeg")
    dataset = CocoDetectionDataset(split_index(root))
    with pytest.raises(DatasetError, match="corrupt image .*000000000501.jpg"):
        dataset[1]


def test_weights_default_offline_names_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DatasetError, match="-P weights=none.*TORCH_HOME"):
        build_model("fasterrcnn_mobilenet_v3_large_320_fpn", "DEFAULT", 4)


@pytest.fixture(autouse=True)
def fast_system_metrics(monkeypatch):
    """MLflow samples system metrics every 10 s: these runs last seconds."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING", "1")


def run(experiment_name, data_dir, **overrides):
    return run_finetune(FinetuneRequest(data_dir=str(data_dir), experiment_name=experiment_name,
                                        register_as=f"det_{experiment_name}", **{**SMALL_DETECTOR, **overrides}))


@pytest.mark.parametrize("input_kind", ["coco", "hf"])
def test_finetune_bundled_sample(bundled_coco, experiment_name, server_uri, input_kind):
    result = run(experiment_name, bundled_coco, input=input_kind, epochs=1, snapshot="copy")  # its own copy of the files
    finished = mlflow.get_run(result.run_id)
    assert finished.info.status == "FINISHED"
    metrics = finished.data.metrics
    undefined = set(finished.data.tags["eval.undefined_stats"].split(",")) - {"none"}
    assert set(COCO_METRICS) - undefined <= set(metrics) and not undefined & set(metrics)
    assert "epoch_loss" in metrics
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(metrics)
    assert any(key.startswith("system/") for key in metrics)
    paths = set(artifact_paths(result.run_id))
    assert {"category_mapping.json", "checkpoints/epoch_001.pt", "coco/train/instances_train2017.json",
            "coco/validation/validation_report.json", "coco/train/class_balance.png", "coco/train/previews/100.jpg"} <= paths
    inputs = {i.dataset.name: i for i in finished.inputs.dataset_inputs}
    digest_tag = finished.data.tags["dataset.digest.train"]
    expected_name = "coco_train"
    assert inputs[expected_name].dataset.digest == digest_tag[:32]
    version = mlflow.MlflowClient().get_model_version(f"det_{experiment_name}", result.model_version)
    assert version.tags["dataset.digest"] == finished.data.tags["dataset.digest"]
    for split in ("train", "validation"):  # the version says which digest is which (issue 25, item 5)
        assert version.tags[f"dataset.digest.{split}"] == finished.data.tags[f"dataset.digest.{split}"]
    assert "each split's content digest" in version.tags["dataset.digest.about"]
    # MLflow 3 lineage: the detector is a LoggedModel whose losses were measured on the train split and
    # COCOeval stats on the validation split; search_logged_models finds it by the validation digest
    val_digest = finished.data.tags["dataset.digest.validation"][:32]
    found = mlflow.search_logged_models(datasets=[{"dataset_name": "coco_validation", "dataset_digest": val_digest}],
                                        output_format="list")
    assert model_id_of(version) in {m.model_id for m in found}
    mlflow.set_experiment(experiment_id="0")  # from another current experiment, our search still finds it
    assert model_id_of(version) in {m.model_id for m in models_measured_on("coco_validation", val_digest)}
    by_dataset = {(m.key, m.dataset_name) for m in mlflow.get_logged_model(model_id_of(version)).metrics}
    assert {("mAP", "coco_validation"), ("epoch_loss", "coco_train")} <= by_dataset
    # pictures with steps: one val_predictions grid per evaluated epoch
    assert len([p for p in paths if p.startswith("images/val_predictions+step+1+")]) == 2  # the PNG and its thumbnail
    assert CategoryMapping.from_json(version.tags["category_mapping"]).names == ("circle", "square", "triangle")
    model = mlflow.pytorch.load_model(f"models:/det_{experiment_name}/{result.model_version}")
    model.eval()
    with torch.no_grad():
        (output,) = model([torch.rand(3, 120, 160)])
    assert output["boxes"].shape[1] == 4 and len(output["boxes"]) == len(output["scores"])


def test_finetune_coco_tiny_hf_input(coco_tiny_dir, experiment_name, server_uri):
    result = run(experiment_name, coco_tiny_dir, input="hf", epochs=1)
    finished = mlflow.get_run(result.run_id)
    assert finished.info.status == "FINISHED" and "mAP" in finished.data.metrics
    assert {i.dataset.source_type for i in finished.inputs.dataset_inputs} == {"coco"}
    assert {i.dataset.name for i in finished.inputs.dataset_inputs} == {"coco_train", "coco_validation"}


def test_finetune_coco_tiny_and_resume(coco_tiny_dir, experiment_name, server_uri):
    first = run(experiment_name, coco_tiny_dir, epochs=1)
    assert mlflow.get_run(first.run_id).data.params["num_classes"] == "80"
    resumed = run(experiment_name, coco_tiny_dir, epochs=2, resume_from=first.run_id)
    assert resumed.start_epoch == 2
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(resumed.run_id, "mAP")] == [2]
    assert "checkpoints/epoch_002.pt" in artifact_paths(resumed.run_id)
    assert mlflow.get_run(resumed.run_id).data.tags["resumed_from_run"] == first.run_id


def test_single_split_is_held_out_for_validation(bundled_coco, tmp_path, experiment_name, sqlite_uri):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(bundled_coco / "annotations/instances_train2017.json", root / "annotations")
    shutil.copytree(bundled_coco / "train2017", root / "train2017")
    result = run(experiment_name, root, epochs=1, max_images=0)
    params = mlflow.get_run(result.run_id).data.params
    assert (params["num_train_images"], params["num_val_images"]) == ("10", "2")


def test_bad_inputs(bundled_coco, tmp_path, experiment_name, sqlite_uri):
    with pytest.raises(DatasetError, match="not a COCO folder"):
        run(experiment_name, tmp_path / "nowhere")
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    with pytest.raises(DatasetError, match="train split 'nothing' not in .*train \\(train2017\\)"):
        run(experiment_name, root, train_split="nothing")
    val = root / "annotations/instances_val2017.json"
    original = val.read_text()
    val.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="missing top-level annotations, categories"):
        run(experiment_name, root)
    data = json.loads(original)
    data["annotations"][0]["category_id"] = 42
    val.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="category_id 42, which is not in 'categories'"):
        run(experiment_name, root)
    val.write_text(json.dumps({"images": [], "annotations": [], "categories": data["categories"]}))
    with pytest.raises(DatasetError, match="lists no images: the dataset is empty"):
        run(experiment_name, root)
    (root / "val2017/000000000500.jpg").unlink()
    val.write_text(original)
    with pytest.raises(DatasetError, match="missing, e.g. .*000000000500.jpg"):
        run(experiment_name, root)
    for annotation_file in (root / "annotations").iterdir():
        annotation_file.unlink()
    with pytest.raises(DatasetError, match="no annotations/instances_<name>.json"):
        run(experiment_name, root)
    assert not mlflow.search_runs(experiment_names=[experiment_name], output_format="list")  # failed before any run


def test_torchrun_one_cpu_process(bundled_coco, experiment_name, server_uri, tmp_path):
    env = dict(os.environ, MLFLOW_TRACKING_URI=server_uri, PYTHONPATH=str(PROJECT_ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               "-m", "entrypoints.coco_finetune", "--data-dir", str(bundled_coco), "--experiment-name", experiment_name,
               "--register-as", f"det_{experiment_name}", *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL_DETECTOR.items()]]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (finished,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert finished.info.status == "FINISHED" and "mAP" in finished.data.metrics


def test_truncated_image_stops_finetune_before_training_or_is_skipped(bundled_coco, tmp_path, experiment_name, sqlite_uri):
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    cut = root / "val2017/000000000500.jpg"
    cut.write_bytes(cut.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"000000000500\.jpg.*truncated JPEG.*on_bad_image=skip"):
        run(experiment_name, root, epochs=1)
    assert not mlflow.search_runs(experiment_names=[experiment_name], output_format="list")  # nothing was logged
    result = run(experiment_name, root, epochs=1, on_bad_image="skip")
    finished = mlflow.get_run(result.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["dataset.ignored_files"] == "1"
    assert "coco/validation/ignored_files.json" in artifact_paths(result.run_id)
    assert finished.data.params["num_val_images"] == "1"  # max_images=2, one of them left out
