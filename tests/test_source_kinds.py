"""A new dataset source kind is one class and one ``register`` call: a toy kind, defined here, is logged,
found and reloaded through ``log_hf_dataset``'s own code path."""

import csv
import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from helpers import build_tree
from mlflow.data.dataset_source import DatasetSource

from image_lineage import hf_dataset as hf
from image_lineage.core import TAG_DIGEST, TAG_SOURCE_KIND, DatasetError
from image_lineage.image_pass import ImageFacts, read_images
from image_lineage.source_kinds import KINDS, LoadedSplit, SourceKind, kind_of, register, unregister


class ImageListSource(DatasetSource):
    """Where a toy dataset came from: its CSV file."""

    def __init__(self, uri: str):
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "image_list"

    def load(self) -> str:
        return self.uri

    @staticmethod
    def _can_resolve(raw_source) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source):
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict) -> "ImageListSource":
        return cls(source_dict["uri"])


class ImageList(SourceKind):
    """``list:<file.csv>``: a CSV of ``path,label`` rows (paths relative to the CSV), one train split."""

    name = "image_list"

    def detect(self, source):
        return source.startswith("list:")

    def available(self, source):
        return {"train": Path(source[len("list:"):])}

    def load_split(self, split, handle, options):
        import datasets

        with open(handle, newline="") as file:
            rows = list(csv.DictReader(file))
        paths = [str(handle.parent / row["path"]) for row in rows]
        facts = read_images(paths, options.image_check)  # the one image pass: hashed, checked, cached
        bad = [(p, f) for p, f in zip(paths, facts) if not isinstance(f, ImageFacts)]
        if bad:
            raise DatasetError(f"bad image {bad[0][0]}: {bad[0][1]}")
        labels = sorted({row["label"] for row in rows})
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=labels)})
        dataset = datasets.Dataset.from_dict(
            {"image": paths, "label": [labels.index(row["label"]) for row in rows]}, features=features)
        digest = hashlib.sha256("".join(f"{row['label']}\t{f.sha256}\n" for row, f in zip(rows, facts)).encode()).hexdigest()
        counts = {name: sum(row["label"] == name for row in rows) for name in labels}
        return LoadedSplit(split, dataset, digest, counts, "rows", "label", ImageListSource(str(handle)))

    def reload(self, source_type, source, options):
        if source_type != "image_list":
            return None
        return self.load_split("train", Path(source["uri"]), options)


@pytest.fixture
def image_list_kind():
    kind = register(ImageList())
    yield kind
    unregister(kind)


def write_list(tmp_path) -> Path:
    root = build_tree(tmp_path, {"pool": {"cat": 2, "dog": 1}})
    listing = tmp_path / "pool.csv"
    with open(listing, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "label"])
        for image in sorted((root / "pool").rglob("*.png")):
            writer.writerow([image.relative_to(tmp_path).as_posix(), image.parent.name])
    return listing


def test_a_kind_defined_here_logs_and_reloads_through_log_hf_dataset(image_list_kind, tmp_path, experiment_name, sqlite_uri):
    listing = write_list(tmp_path)
    source = f"list:{listing}"
    assert kind_of(source) is image_list_kind
    run_id, (split,) = hf.log_hf_dataset(hf.HfRequest(source=source, name="pets", experiment_name=experiment_name))
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[TAG_SOURCE_KIND] == "image_list"
    assert run.data.tags[TAG_DIGEST] == split.digest
    # a kind that lists no image files gets no leakage check (as hub datasets)
    assert run.data.metrics == {"train/num_rows": 3, "train/rows_cat": 2, "train/rows_dog": 1}
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "image_list" and json.loads(dataset_input.dataset.source) == {"uri": str(listing)}
    assert [r.info.run_id for r in hf.find_runs_by_digest(split.digest, [experiment_name])] == [run_id]
    assert hf.load_logged_dataset(run_id)["label"] == split.dataset["label"]


def test_unknown_source_lists_the_registered_kinds(image_list_kind):
    with pytest.raises(DatasetError, match="kinds known: s3, hub, coco, folder, image_list"):
        kind_of("nowhere:at-all")
    assert [k.name for k in KINDS] == ["s3", "hub", "coco", "folder", "image_list"]
