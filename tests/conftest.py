"""Shared fixtures: one real MLflow server for the whole run, sqlite stores, image trees, real data.

Tests never mock MLflow: they log into a live ``mlflow server`` on a free loopback port (started once,
it takes ~30 s on a 2-core machine) or into a fresh embedded sqlite store.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import mlflow
import pytest
from tests_paths import PROJECT_ROOT

from support.local_server import LocalServer

# Nothing in the suite may reach the hub, or write into the user's Hugging Face cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="image_lineage_hf_cache_")

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
MLFLOW_RUN_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI")


def pytest_collection_modifyitems(items):
    """Tests marked ``long`` first, longest first. `make test`'s two workers take tests in this order; started
    where it fell, the README test (minutes) kept one worker busy alone at the end: 17.4 min against 15.8."""
    def seconds(item) -> float:
        mark = item.get_closest_marker("long")
        return mark.kwargs["seconds"] if mark else 0
    items.sort(key=seconds, reverse=True)  # a stable sort: the others keep their order


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URI of one real tracking server shared by the whole test run."""
    with LocalServer(tmp_path_factory.mktemp("mlflow_server")) as server:
        yield server.uri


@pytest.fixture(autouse=True)
def clean_mlflow_env(monkeypatch, tmp_path_factory):
    """No test inherits a run, experiment, store or hash cache from the shell or from another test."""
    for name in MLFLOW_RUN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGE_LINEAGE_CACHE_DIR", str(tmp_path_factory.mktemp("hash_cache")))
    # Tests scan files they wrote a moment ago, which the cache would never keep (its guard against a change
    # in the same clock tick); test_cache.py checks that guard with its real window.
    monkeypatch.setattr("image_lineage.data.cache.RACY_NS", 0)
    yield
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def server_uri(mlflow_server, monkeypatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    return mlflow_server


@pytest.fixture
def sqlite_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(params=["server", "sqlite"])
def any_store_uri(request) -> str:
    """Runs a test once against the live server and once against an embedded sqlite store."""
    return request.getfixturevalue("server_uri" if request.param == "server" else "sqlite_uri")


@pytest.fixture
def experiment_name() -> str:
    return f"HW_Image_Dataset_{uuid.uuid4().hex[:10]}"


def shared_dir(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the project)")
    return path


@pytest.fixture
def catsdogs_dir() -> Path:
    return shared_dir("catsdogs")


@pytest.fixture
def bundled_images() -> Path:
    return PROJECT_ROOT / "image_dataset"


@pytest.fixture
def bundled_coco() -> Path:
    return PROJECT_ROOT / "coco" / "sample"


@pytest.fixture
def coco_tiny_dir() -> Path:
    return shared_dir("coco_tiny")


@pytest.fixture(scope="session")
def loopback_s3_server():
    """One S3-compatible server (moto's) on a loopback port for the whole run."""
    from support.local_server import LoopbackS3

    with LoopbackS3() as server:
        yield server


@pytest.fixture(scope="session")
def loopback_gcs_server():
    """One Google Cloud Storage emulator on a loopback port for the whole run."""
    from support.local_server import LoopbackGCS

    with LoopbackGCS() as server:
        yield server


@pytest.fixture
def gcs(loopback_gcs_server, monkeypatch):
    """The GCS emulator, its address in the environment (as a user points the Google client at an emulator),
    and a bucket of this test's own (``gcs.bucket``)."""
    for name, value in loopback_gcs_server.env.items():
        monkeypatch.setenv(name, value)
    loopback_gcs_server.bucket = f"data-{uuid.uuid4().hex[:10]}"
    loopback_gcs_server.client().create_bucket(loopback_gcs_server.bucket)
    return loopback_gcs_server


@pytest.fixture(scope="session")
def loopback_azurite():
    """One Azure Blob Storage emulator (Azurite) on a loopback port for the whole run; the tests that need it
    skip, saying so, where npm could not install it (``make test`` does)."""
    from support.local_server import LoopbackAzurite

    program = LoopbackAzurite.find()
    if program is None:
        pytest.skip("no azurite-blob (make test installs Azurite with npm into .venv/azurite)")
    with LoopbackAzurite(program) as server:
        yield server


@pytest.fixture
def azure_blob(loopback_azurite, monkeypatch):
    """Azurite, its connection string in the environment (as a user exports it for MLflow), and a container of
    this test's own (``azure_blob.bucket``)."""
    for name, value in loopback_azurite.env.items():
        monkeypatch.setenv(name, value)
    loopback_azurite.bucket = f"data-{uuid.uuid4().hex[:10]}"
    loopback_azurite.container_client(loopback_azurite.bucket).create_container()
    return loopback_azurite


@pytest.fixture
def s3(loopback_s3_server, monkeypatch):
    """The loopback S3 server, its endpoint and key in the environment (as a user exports them), a bucket
    of this test's own (``s3.bucket``), and its request counts reset."""
    for name, value in loopback_s3_server.env.items():
        monkeypatch.setenv(name, value)
    loopback_s3_server.counts.clear()
    loopback_s3_server.stop_after_gets = None
    loopback_s3_server.bucket = f"data-{uuid.uuid4().hex[:10]}"
    loopback_s3_server.client().create_bucket(Bucket=loopback_s3_server.bucket)
    yield loopback_s3_server
    loopback_s3_server.stop_after_gets = None
    if not loopback_s3_server.running:  # a test stopped it
        loopback_s3_server.start()
