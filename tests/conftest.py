"""Shared fixtures: one real MLflow server for the whole run, sqlite stores, image trees, real data.

Tests never mock MLflow: they log into a live ``mlflow server`` on a free loopback port (started once,
it takes ~30 s on a 2-core machine) or into a fresh embedded sqlite store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import mlflow
import pytest

# Nothing in the suite may reach the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
SERVER_START_TIMEOUT_S = 180
MLFLOW_RUN_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_URI")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(uri: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer in {SERVER_START_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")


def start_server(root: Path, extra_args: tuple[str, ...] = (), env: dict | None = None) -> tuple[str, subprocess.Popen]:
    """Start ``mlflow server`` with a sqlite backend and proxied artifacts under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = root / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1", *extra_args,
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(uri, process, log_path)
    except Exception:
        process.kill()
        raise
    return uri, process


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """URI of one real tracking server shared by the whole test run."""
    uri, process = start_server(tmp_path_factory.mktemp("mlflow_server"))
    yield uri
    stop_server(process)


@pytest.fixture(autouse=True)
def clean_mlflow_env(monkeypatch):
    """No test inherits a run, experiment or store from the shell or from another test."""
    for name in MLFLOW_RUN_ENV:
        monkeypatch.delenv(name, raising=False)
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
