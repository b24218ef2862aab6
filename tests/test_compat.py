"""Every private MLflow / ``datasets`` name the project uses (image_lineage/tracking/_compat.py), called
against the installed versions: when an upgrade moves or changes one, the test of that name fails here,
naming it, before any feature breaks in a run."""

import inspect

import datasets
import pandas as pd
import pytest
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import Dataset as DatasetEntity
from mlflow.types import Schema

from image_lineage.tracking import _compat


def test_dataset_entity_is_what_log_inputs_takes():
    dataset = PandasDataset(pd.DataFrame({"a": [1]}), CodeDatasetSource({}), name="d", digest="abc")
    entity = _compat.dataset_entity(dataset)
    assert isinstance(entity, DatasetEntity) and entity.name == "d" and entity.digest == "abc"


def test_infer_schema_reads_a_frame():
    schema = _compat.infer_schema(pd.DataFrame({"path": ["a"], "size": [1]}))
    assert isinstance(schema, Schema) and [c.name for c in schema.inputs] == ["path", "size"]


def test_tracking_store_schemes_and_lookup():
    schemes = _compat.tracking_store_schemes()
    assert {"sqlite", "http", "https", "postgresql", "file"} <= set(schemes)
    assert _compat.has_tracking_store("sqlite:///x.db") and not _compat.has_tracking_store("sqllite:///x.db")


def test_artifact_repository_for_a_local_uri(tmp_path):
    repository = _compat.artifact_repository(tmp_path.as_uri())
    (tmp_path / "f.txt").write_text("x")
    assert hasattr(repository, "log_artifact") and [f.path for f in repository.list_artifacts()] == ["f.txt"]


def test_local_artifact_dir_only_for_a_folder_store(tmp_path):
    assert _compat.local_artifact_dir(tmp_path.as_uri()) == str(tmp_path)
    assert _compat.local_artifact_dir("http://localhost:5000/api/2.0/mlflow-artifacts/artifacts/0") is None


def test_range_reader_only_for_stores_that_serve_byte_ranges(tmp_path):
    assert _compat.range_reader(tmp_path.as_uri()) is None  # a folder store: packs are read in place
    assert callable(_compat.range_reader("http://localhost:5000/api/2.0/mlflow-artifacts/artifacts/0"))
    assert callable(_compat.range_reader("s3://bucket/mlruns/0/run/artifacts"))  # its client and bucket owner
    # its use against live servers: tests/test_content_store.py (a version needing a few files of a pack)


def test_range_reader_reads_through_the_google_repository(gcs):
    """Its client and URI parser, and a range read through them (the emulator)."""
    gcs.client().bucket(gcs.bucket).blob("root/run/artifacts/pack").upload_from_string(bytes(range(100)))
    assert _compat.range_reader(f"gs://{gcs.bucket}/root/run/artifacts")("pack", 10, 14) == bytes(range(10, 15))


def test_a_reply_longer_than_the_range_is_not_served_and_a_shorter_one_is_left_to_the_caller():
    """A store that ignored the range sent the whole file: the pack is then downloaded whole. A shorter reply (a
    pack replaced by a smaller file) goes back to the caller, which refuses it as it does the other stores'."""
    with pytest.raises(_compat.RangeNotServed, match="10 bytes in reply"):
        _compat._whole_range(b"x" * 10, "bucket/pack", 0, 4)
    assert _compat._whole_range(b"x" * 5, "bucket/pack", 0, 4) == b"x" * 5
    assert _compat._whole_range(b"x" * 3, "bucket/pack", 0, 4) == b"x" * 3


def test_range_reader_reads_through_the_azure_repository(azure_blob):
    """Its client and URI parser, and a range read through them (Azurite; skipped, saying so, without it)."""
    azure_blob.container_client(azure_blob.bucket).upload_blob("root/run/artifacts/pack", bytes(range(100)))
    uri = f"wasbs://{azure_blob.bucket}@{azure_blob.ACCOUNT}.blob.core.windows.net/root/run/artifacts"
    assert _compat.range_reader(uri)("pack", 10, 14) == bytes(range(10, 15))


def test_code_source_and_invalid_parameter_code():
    assert isinstance(_compat.code_source(), CodeDatasetSource)
    from mlflow.exceptions import MlflowException

    assert MlflowException("x", _compat.invalid_parameter_code()).error_code == "INVALID_PARAMETER_VALUE"


def test_the_request_session_factory_is_there_with_its_signature():
    module = _compat.request_session_module()
    assert module is not None, "MLflow has no _cached_get_request_session: quick ACKs cannot apply"
    factory = getattr(module, _compat.SESSION_FACTORY)
    parameters = list(inspect.signature(factory.__wrapped__).parameters)
    assert parameters[:6] == ["max_retries", "backoff_factor", "backoff_jitter", "retry_codes", "raise_on_status", "_pid"]
    session = module._get_request_session(0, 1, 0.5, frozenset({503}), True, True)
    assert all(hasattr(adapter, "poolmanager") for adapter in session.adapters.values())


def test_dataset_context_tag_is_mlflows():
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    assert _compat.DATASET_CONTEXT_TAG == MLFLOW_DATASET_CONTEXT


def test_max_param_length_is_mlflows():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert _compat.MAX_PARAM_LENGTH == MAX_PARAM_VAL_LENGTH


@pytest.mark.parametrize("selected", [False, True])
def test_selection_indices(selected):
    dataset = datasets.Dataset.from_dict({"a": [1, 2, 3]})
    dataset = dataset.select([0, 2]) if selected else dataset
    indices = _compat.selection_indices(dataset)
    assert (indices is not None and indices.num_rows == 2) if selected else indices is None
