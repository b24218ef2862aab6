"""Our Hugging Face dataset object behaves as MLflow's own.

Each test follows one test of MLflow's ``tests/data/test_huggingface_dataset_and_source.py`` and runs
against ``mlflow.data.from_huggingface`` and our ``image_lineage.tracking.datasets.from_huggingface`` alike.
Hub loads (``rotten_tomatoes``, ``allenai/c4``) are replaced by local CSV data made here. Two of MLflow's
tests cannot be followed: ``task=`` and task templates left ``datasets`` in 3.0, and a hub ``revision``
needs the hub (a local folder has no revisions); the revision is still checked to be recorded.
"""

import json

import datasets
import numpy as np
import pandas as pd
import pytest
from mlflow.data.dataset_source_registry import get_dataset_source_from_json
from mlflow.data.huggingface_dataset import HuggingFaceDataset
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.exceptions import MlflowException
from mlflow.models.evaluation.base import EvaluationDataset
from mlflow.types.schema import Schema
from mlflow.types.utils import _infer_schema

import mlflow.data
from image_lineage.tracking import datasets as our_datasets

FACTORIES = {"mlflow": mlflow.data.from_huggingface, "ours": our_datasets.from_huggingface}


@pytest.fixture(params=sorted(FACTORIES))
def from_huggingface(request):
    return FACTORIES[request.param]


@pytest.fixture
def reviews(tmp_path):
    """A local stand-in for rotten_tomatoes: text + label, loaded from a folder as the hub would be."""
    folder = tmp_path / "reviews"
    (folder / "data").mkdir(parents=True)
    frame = pd.DataFrame({"text": [f"review number {i}" for i in range(300)], "label": [i % 2 for i in range(300)]})
    frame.to_csv(folder / "data" / "train.csv", index=False)
    return str(folder)


def check_expected_dataset(mlflow_ds, ds, split="train"):
    assert isinstance(mlflow_ds, HuggingFaceDataset)
    assert mlflow_ds.ds == ds
    assert mlflow_ds.schema == _infer_schema(ds.to_pandas())
    assert {k: mlflow_ds.profile[k] for k in ("num_rows", "dataset_size", "size_in_bytes")} == {
        "num_rows": ds.num_rows, "dataset_size": ds.dataset_size, "size_in_bytes": ds.size_in_bytes}
    assert isinstance(mlflow_ds.source, HuggingFaceDatasetSource)
    reloaded_ds = mlflow_ds.source.load()
    assert reloaded_ds.builder_name == ds.builder_name
    assert reloaded_ds.config_name == ds.config_name
    assert reloaded_ds.split == ds.split == split
    assert reloaded_ds.num_rows == ds.num_rows
    return reloaded_ds


def test_constructs_expected_dataset(from_huggingface, reviews):
    ds = datasets.load_dataset(reviews, split="train")
    mlflow_ds = from_huggingface(ds, path=reviews)
    reloaded_ds = check_expected_dataset(mlflow_ds, ds)
    assert from_huggingface(reloaded_ds, path=reviews).digest == mlflow_ds.digest


def test_revision_is_recorded_and_used_to_reload(from_huggingface, reviews):
    ds = datasets.load_dataset(reviews, split="train")
    mlflow_ds = from_huggingface(ds, path=reviews, revision="main")
    assert mlflow_ds.source.to_dict()["revision"] == "main"
    assert mlflow_ds.source.load().num_rows == ds.num_rows


def test_constructs_expected_dataset_with_data_files(from_huggingface, reviews):
    data_files = {"validation": f"{reviews}/data/train.csv"}
    ds = datasets.load_dataset("csv", data_files=data_files, split="validation")
    mlflow_ds = from_huggingface(ds, path="csv", data_files=data_files)
    reloaded_ds = check_expected_dataset(mlflow_ds, ds, split="validation")
    assert from_huggingface(reloaded_ds, path="csv", data_files=data_files).digest == mlflow_ds.digest


def test_constructs_expected_dataset_with_data_dir(from_huggingface, tmp_path):
    df = pd.DataFrame.from_dict({"a": [1, 2, 3], "b": [4, 5, 6]})
    (tmp_path / "data").mkdir()
    df.to_csv(tmp_path / "data" / "my_data.csv")
    ds = datasets.load_dataset(str(tmp_path), data_dir="data", split="train")  # name="csv": gone in datasets 5
    mlflow_ds = from_huggingface(ds, path=str(tmp_path), data_dir="data")
    reloaded_ds = check_expected_dataset(mlflow_ds, ds)
    assert from_huggingface(reloaded_ds, path=str(tmp_path), data_dir="data").digest == mlflow_ds.digest


def test_respects_user_specified_name_and_digest(from_huggingface, reviews):
    ds = datasets.load_dataset(reviews, split="train")
    mlflow_ds = from_huggingface(ds, path=reviews, name="myname", digest="mydigest")
    assert mlflow_ds.name == "myname" and mlflow_ds.digest == "mydigest"


def test_digest_is_consistent_for_large_ordered_datasets(from_huggingface, tmp_path):
    assert mlflow.data.huggingface_dataset._MAX_ROWS_FOR_DIGEST_COMPUTATION_AND_SCHEMA_INFERENCE < 200000
    df = pd.DataFrame.from_dict({"a": list(range(200000)), "b": list(range(200000))})
    (tmp_path / "data").mkdir()
    df.to_csv(tmp_path / "data" / "my_data.csv")
    ds = datasets.load_dataset(str(tmp_path), data_dir="data", split="train")  # name="csv": gone in datasets 5
    assert from_huggingface(ds, path=str(tmp_path), data_dir="data").digest == "1dda4ce8"


def test_throws_for_dataset_dict(from_huggingface, reviews):
    ds = datasets.load_dataset(reviews)
    assert isinstance(ds, datasets.DatasetDict)
    with pytest.raises(MlflowException, match="must be an instance of `datasets.Dataset`.*DatasetDict"):
        from_huggingface(ds, path=reviews)


def test_dataset_conversion_to_json(from_huggingface, reviews):
    mlflow_ds = from_huggingface(datasets.load_dataset(reviews, split="train"), path=reviews)
    parsed_json = json.loads(mlflow_ds.to_json())
    assert parsed_json.keys() <= {"name", "digest", "source", "source_type", "schema", "profile"}
    assert parsed_json["name"] == mlflow_ds.name
    assert parsed_json["digest"] == mlflow_ds.digest
    assert parsed_json["source"] == mlflow_ds.source.to_json()
    assert parsed_json["source_type"] == mlflow_ds.source._get_source_type()
    assert parsed_json["profile"] == json.dumps(mlflow_ds.profile)
    schema_json = json.dumps(json.loads(parsed_json["schema"])["mlflow_colspec"])
    assert Schema.from_json(schema_json) == mlflow_ds.schema


def test_dataset_source_conversion_to_json(from_huggingface, reviews):
    ds = datasets.load_dataset(reviews, split="train")
    source = from_huggingface(ds, path=reviews, revision="main").source
    parsed_source = json.loads(source.to_json())
    assert parsed_source["revision"] == "main"
    assert parsed_source["split"] == "train"
    assert parsed_source["config_name"] == "default"
    assert parsed_source["path"] == reviews
    assert not parsed_source["data_dir"]
    assert not parsed_source["data_files"]
    assert json.loads(HuggingFaceDatasetSource.from_json(source.to_json()).to_json()) == parsed_source
    reloaded_source = get_dataset_source_from_json(source.to_json(), source_type=source._get_source_type())
    assert type(source) is type(reloaded_source) and reloaded_source.to_json() == source.to_json()


def test_to_evaluation_dataset(from_huggingface, reviews):
    dataset = from_huggingface(datasets.load_dataset(reviews, split="train"), path=reviews, targets="label")
    evaluation_dataset = dataset.to_evaluation_dataset()
    assert isinstance(evaluation_dataset, EvaluationDataset)
    assert evaluation_dataset.features_data.equals(dataset.ds.to_pandas().drop("label", axis=1))
    assert np.array_equal(evaluation_dataset.labels_data, dataset.ds.to_pandas()["label"].values)


# ---------------------------------------------------------------- where ours was not MLflow's


def test_a_source_passed_in_gets_the_config_name_mlflow_records(reviews):
    ds = datasets.load_dataset(reviews, split="train")
    ours = our_datasets.from_huggingface(ds, source=HuggingFaceDatasetSource(path=reviews, split="train"), digest="d")
    assert json.loads(ours.source.to_json())["config_name"] == "default" == ds.config_name


def test_a_null_past_the_sampled_rows_makes_the_column_optional():
    rows = 150 + our_datasets.SCHEMA_SAMPLE_ROWS
    ds = datasets.Dataset.from_dict({"a": list(range(rows)), "b": [None if i == 150 else "x" for i in range(rows)]})
    schema = our_datasets.from_huggingface(ds, path="x", digest="d").schema
    assert {spec.name: spec.required for spec in schema.inputs} == {"a": True, "b": False}
    assert schema == mlflow.data.from_huggingface(ds, path="x").schema
    selected = ds.select([i for i in range(rows) if i != 150])  # only the selected rows count
    assert all(spec.required for spec in our_datasets.from_huggingface(selected, path="x", digest="d").schema.inputs)
