import json
import shutil
from pathlib import Path

import pytest
from helpers import (
    break_duplicate_annotation_id, break_duplicate_image_id, break_image_without_id, break_missing_bbox,
    break_missing_file_name, break_short_bbox,
)
from PIL import Image
from pycocotools.coco import COCO

from image_lineage.core.errors import DatasetError
from image_lineage.data.coco.hf_form import HUB_FORM_ADDITIONS, coco_to_hf
from image_lineage.data.coco.index import compute_coco_digest, images_per_category, index_split, instances_per_category
from image_lineage.data.coco.layout import find_coco_splits
from image_lineage.data.coco.validate import load_coco_json


def copy_coco(source, tmp_path):
    target = tmp_path / "coco"
    shutil.copytree(source, target)
    return target


def edit_annotations(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_standard_layout_found_without_parameters(bundled_coco, coco_tiny_dir):
    for folder, names in ((bundled_coco, ("train2017", "val2017")), (coco_tiny_dir, ("train2017", "val2017"))):
        splits = find_coco_splits(folder)
        assert list(splits) == ["train", "validation"]
        assert (splits["train"].name, splits["validation"].name) == names
        assert splits["validation"].images_dir == folder / "val2017"


def test_features_follow_detection_datasets_coco_layout(bundled_coco):
    dataset = coco_to_hf(index_split(find_coco_splits(bundled_coco)["train"]))
    features = dataset.features.to_dict()
    assert list(features) == ["image_id", "image", "width", "height", "objects"]
    assert set(features["objects"]) == {"bbox_id", "category", "bbox", "area", "iscrowd"}
    assert dataset.features["objects"]["category"].feature.names == ["circle", "square", "triangle"]
    assert dataset.split == "train" and len(dataset) == 12


@pytest.mark.parametrize("split", ["train", "validation"])
def test_boxes_and_categories_survive_conversion(coco_tiny_dir, split):
    coco_split = find_coco_splits(coco_tiny_dir)[split]
    dataset = coco_to_hf(index_split(coco_split))
    reference = COCO(str(coco_split.annotation_file))
    names = dataset.features["objects"]["category"].feature.names
    assert names == [reference.cats[i]["name"] for i in sorted(reference.cats)]
    rows = dataset.remove_columns("image")  # compare annotations only: no image decoding
    assert sorted(rows["image_id"]) == sorted(reference.getImgIds())
    crowd = 0
    for row in rows:
        anns = sorted(reference.loadAnns(reference.getAnnIds(imgIds=row["image_id"])), key=lambda a: a["id"])
        objects = row["objects"]
        assert objects["bbox_id"] == [a["id"] for a in anns]
        assert [names[c] for c in objects["category"]] == [reference.cats[a["category_id"]]["name"] for a in anns]
        assert len(objects["bbox"]) == len(anns)
        for box, ann in zip(objects["bbox"], anns):  # the hub form's [x_min, y_min, x_max, y_max]
            x, y, w, h = ann["bbox"]
            assert box == pytest.approx([x, y, x + w, y + h], abs=1e-9)
        assert objects["area"] == [round(a["area"]) for a in anns]
        assert objects["iscrowd"] == [bool(a["iscrowd"]) for a in anns]
        assert (row["width"], row["height"]) == (reference.imgs[row["image_id"]]["width"], reference.imgs[row["image_id"]]["height"])
        crowd += sum(objects["iscrowd"])
    assert crowd > 0  # coco_tiny holds crowd (RLE) annotations: they are kept, flagged


def test_images_load_as_pictures(bundled_coco):
    dataset = coco_to_hf(index_split(find_coco_splits(bundled_coco)["validation"]))
    image = dataset[0]["image"]
    assert isinstance(image, Image.Image) and image.size == (dataset[0]["width"], dataset[0]["height"])


def test_digest_same_for_two_loads_changes_with_pixel_and_box(bundled_coco, tmp_path):
    root = copy_coco(bundled_coco, tmp_path)
    split = find_coco_splits(root)["train"]
    first = compute_coco_digest(index_split(split))
    assert compute_coco_digest(index_split(split)) == first

    image_path = split.images_dir / "000000000100.jpg"
    with Image.open(image_path) as picture:
        picture = picture.copy()
    picture.putpixel((5, 5), (0, 0, 0) if picture.getpixel((5, 5)) != (0, 0, 0) else (255, 255, 255))
    picture.save(image_path, quality=100)
    pixel_changed = compute_coco_digest(index_split(split))
    assert pixel_changed != first

    edit_annotations(split.annotation_file, lambda d: d["annotations"][0]["bbox"].__setitem__(0, d["annotations"][0]["bbox"][0] + 1))
    assert compute_coco_digest(index_split(split)) not in (first, pixel_changed)


def test_counts_per_category(bundled_coco):
    index = index_split(find_coco_splits(bundled_coco)["train"])
    data = json.loads(index.split.annotation_file.read_text())
    instances = instances_per_category(index)
    assert sum(instances.values()) == len(data["annotations"])
    images = images_per_category(index)
    assert all(0 < images[name] <= instances[name] for name in instances if instances[name])


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_coco_json(tmp_path / "instances_val2017.json")


def test_json_that_is_not_coco(tmp_path):
    path = tmp_path / "instances_x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="missing top-level annotations, categories"):
        load_coco_json(path)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_coco_json(path)


def test_annotation_pointing_at_missing_image_or_category(bundled_coco, tmp_path):
    root = copy_coco(bundled_coco, tmp_path)
    split = find_coco_splits(root)["train"]
    edit_annotations(split.annotation_file, lambda d: d["annotations"][0].__setitem__("category_id", 99))
    with pytest.raises(DatasetError, match="category_id 99, which is not in 'categories'"):
        index_split(split)
    edit_annotations(split.annotation_file, lambda d: d["annotations"][0].update(category_id=1, image_id=4242))
    with pytest.raises(DatasetError, match="image_id 4242, which is not in 'images'"):
        index_split(split)


def test_missing_image_file(bundled_coco, tmp_path):
    root = copy_coco(bundled_coco, tmp_path)
    split = find_coco_splits(root)["validation"]
    (split.images_dir / "000000000501.jpg").unlink()
    with pytest.raises(DatasetError, match="missing, e.g. .*000000000501.jpg"):
        index_split(split)


def test_empty_dataset(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "annotations/instances_empty.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match="lists no images"):
        index_split(find_coco_splits(tmp_path)["empty"])


def test_features_equal_the_hub_datasets_features_plus_iscrowd(coco_tiny_dir):
    """tests/fixtures/detection_datasets_coco_features.json: the hub dataset's features (see HUB_FORM_ADDITIONS
    for where they come from); our form equals it once the documented addition is set aside."""
    import datasets

    hub = datasets.Features.from_dict(json.loads((Path(__file__).parent / "fixtures/detection_datasets_coco_features.json").read_text()))
    dataset = coco_to_hf(index_split(find_coco_splits(coco_tiny_dir)["validation"]))
    ours = dataset.features.copy()
    added = {name: ours["objects"].pop(name) for name in HUB_FORM_ADDITIONS}
    assert ours == hub
    assert added == {"iscrowd": datasets.List(datasets.Value("bool"))}


@pytest.mark.parametrize("breakage", [break_duplicate_image_id, break_duplicate_annotation_id, break_missing_bbox,
                                      break_missing_file_name, break_image_without_id, break_short_bbox])
def test_broken_real_annotations_name_the_file_entry_and_field(coco_tiny_dir, tmp_path, breakage):
    """On the real COCO 2017 subset: each breakage stops loading with a message naming the file, the entry
    and the field (before, a missing field was a bare KeyError and duplicate ids merged two pictures' boxes)."""
    root = copy_coco(coco_tiny_dir, tmp_path)
    split = find_coco_splits(root)["validation"]
    expected = {}
    edit_annotations(split.annotation_file, lambda data: expected.setdefault("text", breakage(data)))
    with pytest.raises(DatasetError) as raised:
        index_split(split)
    assert expected["text"] in str(raised.value) and str(split.annotation_file) in str(raised.value)


def test_duplicate_image_ids_stop_log_hf_dataset_before_any_run(coco_tiny_dir, tmp_path, sqlite_uri, experiment_name, caplog):
    import mlflow

    from entrypoints import log_hf_dataset

    root = copy_coco(coco_tiny_dir, tmp_path)
    split = find_coco_splits(root)["validation"]
    edit_annotations(split.annotation_file, break_duplicate_image_id)
    assert log_hf_dataset.main(["--source", str(root), "--experiment-name", experiment_name]) == 2
    assert "images ids used more than once" in caplog.text
    assert not mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
