import json
import shutil

import mlflow
import pytest
from helpers import build_real_versions, build_tree, dataset_metrics
from PIL import Image

from entrypoints import log_hf_dataset as hf_cli
from image_lineage.core.errors import DatasetError
from image_lineage.core.names import TAG_DIGEST
from image_lineage.data.arrow_digest import compute_arrow_digest
from image_lineage.data.folders import scan_version
from image_lineage.data.kinds.base import label_counts
from image_lineage.data.kinds.registry import load_splits
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset
from image_lineage.tracking.lineage import find_runs_by_digest, load_logged_dataset


def log(source, experiment_name, **kwargs):
    return log_hf_dataset(HfRequest(source=str(source), experiment_name=experiment_name, **kwargs))


def inputs_by_split(run_id):
    run = mlflow.get_run(run_id)
    return {{t.key: t.value for t in i.tags}["split"]: i for i in run.inputs.dataset_inputs}


def test_folder_source_bundled_v2(bundled_images, experiment_name, server_uri):
    run_id, (split,) = log(bundled_images / "v2", experiment_name)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "hf_image_dataset_v2"
    assert run.data.params["num_rows"] == "3" and run.data.params["num_classes"] == "2"
    assert json.loads(run.data.params["class_names"]) == ["cat", "dog"]
    features = json.loads(run.data.params["features"])
    assert features["label"] == {"names": ["cat", "dog"], "_type": "ClassLabel"}
    assert dataset_metrics(run) == {"train/num_rows": 3, "train/rows_cat": 1, "train/rows_dog": 2}

    # the folder's digest is the manifest digest of the foundation issue
    assert run.data.tags[TAG_DIGEST] == split.digest == scan_version(bundled_images / "v2").digest
    dataset_input = inputs_by_split(run_id)["train"]
    assert dataset_input.dataset.name == "image_dataset_v2_train"
    assert dataset_input.dataset.digest == split.digest[:32]
    source = json.loads(dataset_input.dataset.source)
    assert dataset_input.dataset.source_type == "hugging_face"
    assert source["path"] == "imagefolder" and source["data_dir"].endswith("image_dataset/v2")
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert {f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "hf/train")} == {
        "hf/train/features.json", "hf/train/class_balance.png", "hf/train/manifest.json",
    }
    # each image's sha256 (what trace finds it by), under the split's digest
    manifest = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/hf/train/manifest.json"))
    assert manifest["digest"] == split.digest and len(manifest["images"]) == 3


def test_coco_source_bundled_logs_both_splits(bundled_coco, experiment_name, server_uri):
    run_id, splits = log(bundled_coco, experiment_name, context="validation", name="shapes")
    run = mlflow.get_run(run_id)
    assert [s.split for s in splits] == ["train", "validation"]
    assert json.loads(run.data.params["splits"]) == ["train", "validation"]
    assert json.loads(run.data.params["class_names"]) == ["circle", "square", "triangle"]
    inputs = inputs_by_split(run_id)
    assert {i.dataset.name for i in inputs.values()} == {"shapes_train", "shapes_validation"}
    for split in splits:
        dataset = inputs[split.split].dataset
        assert dataset.digest == split.digest[:32] and dataset.source_type == "coco"
        assert json.loads(dataset.source)["annotation_file"].endswith(f"instances_{'train' if split.split == 'train' else 'val'}2017.json")
        assert run.data.tags[f"{TAG_DIGEST}.{split.split}"] == split.digest
        assert {t.key: t.value for t in inputs[split.split].tags}["mlflow.data.context"] == "validation"
    annotations = json.loads((bundled_coco / "annotations/instances_train2017.json").read_text())["annotations"]
    train_instances = sum(v for k, v in run.data.metrics.items() if k.startswith("train/instances_"))
    assert train_instances == len(annotations)


def test_coco_tiny_and_catsdogs(coco_tiny_dir, catsdogs_dir, tmp_path, experiment_name, server_uri):
    run_id, splits = log(coco_tiny_dir, experiment_name, split="validation")
    run = mlflow.get_run(run_id)
    assert [s.split for s in splits] == ["validation"] and run.data.metrics["validation/num_rows"] == 80
    assert run.data.params["num_classes"] == "80"
    assert run.data.metrics["validation/instances_traffic_light"] > 0
    root = build_real_versions(catsdogs_dir, tmp_path / "pets")
    run_id, (split,) = log(root / "v2", experiment_name)
    assert dataset_metrics(mlflow.get_run(run_id)) == {"train/num_rows": 9, "train/rows_cat": 4, "train/rows_dog": 5}


def test_folder_with_train_and_validation_subfolders(tmp_path, experiment_name, sqlite_uri):
    root = build_tree(tmp_path, {"train": {"cat": 3, "dog": 2}, "validation": {"cat": 1, "dog": 1}})
    run_id, splits = log(root, experiment_name)
    assert [(s.split, len(s.dataset)) for s in splits] == [("train", 5), ("validation", 2)]
    assert set(inputs_by_split(run_id)) == {"train", "validation"}
    run_id, splits = log(root, experiment_name, split="validation")
    assert [s.split for s in splits] == ["validation"]


def test_digest_changes_with_one_pixel_and_is_stable_across_loads(tmp_path):
    root = build_tree(tmp_path, {"v1": {"cat": 2, "dog": 2}})
    (first,) = load_splits(str(root / "v1"))
    (again,) = load_splits(str(root / "v1"))
    assert first.digest == again.digest
    path = root / "v1/dog/dog_02.png"
    with Image.open(path) as image:
        image = image.copy()
    image.putpixel((3, 3), tuple(255 - c for c in image.getpixel((3, 3))))
    image.save(path)
    (changed,) = load_splits(str(root / "v1"))
    assert changed.digest != first.digest


def test_arrow_digest_sees_image_bytes_mlflow_digest_does_not(tmp_path):
    """The verified fact behind this module: same labels, other pictures -> MLflow's digest is equal."""
    import datasets

    paths = []
    for i, color in enumerate([(10, 20, 30), (200, 100, 50)]):
        for variant in ("a", "b"):
            path = tmp_path / variant / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), color if variant == "a" else tuple(c + 1 for c in color)).save(path)
            paths.append(path)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})

    def make(variant):
        files = sorted(str(p) for p in paths if p.parent.name == variant)
        return datasets.Dataset.from_dict({"image": files, "label": [0, 1]}, features=features)

    a, b = make("a"), make("b")
    assert mlflow.data.from_huggingface(a).digest == mlflow.data.from_huggingface(b).digest
    assert compute_arrow_digest(a) != compute_arrow_digest(b)
    assert compute_arrow_digest(a) == compute_arrow_digest(make("a"))
    assert compute_arrow_digest(a.select([1, 0])) != compute_arrow_digest(a)
    assert label_counts(a, "label") == {"x": 1, "y": 1}


def test_round_trip_log_find_reload(bundled_coco, bundled_images, experiment_name, server_uri):
    folder_run, (folder_split,) = log(bundled_images / "v2", experiment_name)
    coco_run, coco_splits = log(bundled_coco, experiment_name)
    found = find_runs_by_digest(folder_split.digest, experiment_names=[experiment_name])
    assert [r.info.run_id for r in found] == [folder_run]
    assert [r.info.run_id for r in find_runs_by_digest(coco_splits[1].digest[:32], [experiment_name])] == [coco_run]

    reloaded = load_logged_dataset(folder_run)
    assert len(reloaded) == 3 and reloaded.features["label"].names == ["cat", "dog"]
    (again,) = load_splits(str(bundled_images / "v2"))
    assert again.digest == folder_split.digest
    reloaded_val = load_logged_dataset(coco_run, split="validation")
    assert reloaded_val["image_id"] == coco_splits[1].dataset["image_id"]


def test_reload_refuses_changed_data(tmp_path, experiment_name, sqlite_uri):
    root = build_tree(tmp_path / "data", {"v1": {"cat": 2}})
    run_id, _ = log(root / "v1", experiment_name)
    (root / "v1/cat/cat_01.png").unlink()
    with pytest.raises(DatasetError, match="changed since it was logged"):
        load_logged_dataset(run_id)


def test_unknown_source_kind(tmp_path):
    with pytest.raises(DatasetError, match="unknown source"):
        load_splits(str(tmp_path / "nothing_here"))


def test_split_not_present(bundled_images, bundled_coco):
    with pytest.raises(DatasetError, match="split 'validation' not found.*splits present: train"):
        load_splits(str(bundled_images / "v2"), split="validation")
    with pytest.raises(DatasetError, match="split 'test' not found.*train, validation"):
        load_splits(str(bundled_coco), split="test")


def test_coco_with_missing_image_or_dangling_annotation(bundled_coco, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(bundled_coco, root)
    (root / "val2017/000000000500.jpg").unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_splits(str(root), split="validation")
    path = root / "annotations/instances_train2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["image_id"] = 999999
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image_id 999999"):
        load_splits(str(root), split="train")


def test_hub_name_while_offline(experiment_name, sqlite_uri, caplog):
    with pytest.raises(DatasetError, match="offline mode is on.*-P source=<image folder>"):
        load_splits("hub:detection-datasets/coco", split="validation")
    assert hf_cli.main(["--source", "hub:detection-datasets/coco", "--experiment-name", experiment_name]) == 2
    assert "could not be loaded" in caplog.text


def test_cli_bad_targets_column(bundled_images, experiment_name, sqlite_uri, caplog):
    assert hf_cli.main(["--source", str(bundled_images / "v2"), "--targets", "species", "--experiment-name", experiment_name]) == 2
    assert "targets column 'species' not in the dataset" in caplog.text


def test_arrow_digest_of_embedded_image_bytes(tmp_path):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})
    pictures = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(pictures):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(path)

    def embedded(byte_strings):
        cells = [{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(byte_strings)]
        return datasets.Dataset.from_dict({"image": cells, "label": [0, 1, 0]}, features=features)

    original = [p.read_bytes() for p in pictures]
    altered = original[:2] + [original[2][:-1] + bytes([original[2][-1] ^ 1])]
    parquet = tmp_path / "rows.parquet"
    embedded(original).to_parquet(str(parquet))
    reloaded = datasets.load_dataset("parquet", data_files=str(parquet), split="train")
    assert compute_arrow_digest(reloaded) == compute_arrow_digest(embedded(original))
    assert compute_arrow_digest(embedded(altered)) != compute_arrow_digest(embedded(original))
