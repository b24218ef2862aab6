"""Faults against real servers: a server killed mid-logging, concurrent logging, authentication, secrets."""

import faulthandler
import json
import os
import subprocess
import sys
import threading
import time

import mlflow
import pytest
from helpers import build_real_versions, dataset_metrics
from tests_paths import PROJECT_ROOT

from entrypoints import log_folder_dataset as folder_cli
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from support.local_server import LocalServer


def entry_point(module: str, args: list[str], tracking_uri: str, extra_env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, PYTHONPATH=str(PROJECT_ROOT), **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-m", f"entrypoints.{module}", *args], env=env, cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_running_run(experiment: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if mlflow.get_experiment_by_name(experiment) and mlflow.search_runs(
                experiment_names=[experiment], filter_string="attributes.status = 'RUNNING'", output_format="list"):
            return
        time.sleep(0.05)
    raise AssertionError("the logging run never started")


@pytest.mark.long(seconds=82)
def test_server_killed_mid_logging_then_relog_completes(catsdogs_dir, tmp_path, monkeypatch, experiment_name):
    data = build_real_versions(catsdogs_dir, tmp_path / "pets", v1_cats=40, v2_cats=40, v2_dogs=40)
    server = LocalServer(tmp_path / "server").start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    mlflow.set_tracking_uri(server.uri)
    try:
        logging_run = entry_point("log_folder_dataset", ["--data-dir", str(data), "--version", "v2",
                                                        "--max-samples-per-class", "40", "--experiment-name", experiment_name],
                                  server.uri, {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"})
        wait_for_running_run(experiment_name)
        server.stop()  # mid-logging: the run exists, its files are on their way
        output, _ = logging_run.communicate(timeout=300)
        assert logging_run.returncode != 0, output
        server = LocalServer(tmp_path / "server", port=server.port).start()  # same store, same address
        (broken,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
        assert broken.info.status != "FINISHED"  # RUNNING (the client could not report) or FAILED
        logged = log_folder_version(FolderVersionRequest(data_dir=str(data), version="v2", experiment_name=experiment_name,
                                                         max_samples_per_class=40))
        assert logged.snapshot_run_id is None  # the broken run is not taken as a snapshot
        finished = mlflow.get_run(logged.run_id)
        assert finished.info.status == "FINISHED" and finished.data.metrics["total_images"] == 80
        assert len(mlflow.MlflowClient().list_artifacts(logged.run_id, "samples/dog")) == 40
    finally:
        server.stop()


def test_two_versions_logged_at_the_same_time(bundled_images, server_uri, experiment_name):
    processes = [entry_point("log_folder_dataset", ["--data-dir", str(bundled_images), "--version", version,
                                                   "--experiment-name", experiment_name], server_uri)
                 for version in ("v1", "v2")]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=[experiment_name], output_format="list")}
    assert set(runs) == {"image_v1", "image_v2"} and {r.info.status for r in runs.values()} == {"FINISHED"}
    assert dataset_metrics(runs["image_v1"]) == {"total_images": 2, "class_cat_count": 2, "class_dog_count": 0}
    assert dataset_metrics(runs["image_v2"]) == {"total_images": 3, "class_cat_count": 1, "class_dog_count": 2}


def test_threads_logging_two_versions_in_one_process(bundled_images, server_uri, experiment_name):
    results, errors = {}, []

    def log(version):
        try:
            results[version] = log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version=version,
                                                                       experiment_name=experiment_name))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=log, args=(v,), daemon=True) for v in ("v1", "v2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)  # each takes ~2 s: a thread still alive after 5 minutes is stuck
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:
        faulthandler.dump_traceback()  # where they are stuck, in the test's output
    assert not stuck and not errors
    assert mlflow.get_run(results["v2"].run_id).data.params["dataset_version"] == "2.0.0"
    assert mlflow.get_run(results["v1"].run_id).data.metrics["total_images"] == 2


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth_server")
    config = root / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = EDIT\n"
                      f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = admin\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_AUTH_ADMIN_PASSWORD="s3cret-admin-pw",
               MLFLOW_FLASK_SERVER_SECRET_KEY="test-only-csrf-key")
    with LocalServer(root, extra_args=("--app-name", "basic-auth"), env=env) as server:
        yield server.uri


def test_authenticated_server(auth_server, monkeypatch, bundled_images, experiment_name, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-admin-pw")
    assert folder_cli.main(["--data-dir", str(bundled_images), "--version", "v2", "--experiment-name", experiment_name]) == 0
    mlflow.set_tracking_uri(auth_server)
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FINISHED" and run.data.metrics["total_images"] == 3

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong-password")
    assert folder_cli.main(["--data-dir", str(bundled_images), "--version", "v1", "--experiment-name", experiment_name]) == 2
    assert "refused the request (HTTP 401" in caplog.text and "MLFLOW_TRACKING_PASSWORD" in caplog.text
    assert "wrong-password" not in caplog.text
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert folder_cli.main(["--data-dir", str(bundled_images), "--version", "v1"]) == 2
    assert "with no credentials" in caplog.text


def test_no_secret_reaches_params_tags_or_files(bundled_images, bundled_coco, server_uri, experiment_name, monkeypatch, tmp_path):
    secrets = {"HF_TOKEN": "hf_SECRETtoken123", "MLFLOW_TRACKING_PASSWORD": "pw-SECRET-456", "AWS_SECRET_ACCESS_KEY": "aws-SECRET-789"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    for module, args in (("log_folder_dataset", ["--data-dir", str(bundled_images), "--version", "v2"]),
                         ("log_hf_dataset", ["--source", str(bundled_coco)])):
        process = entry_point(module, [*args, "--experiment-name", experiment_name], server_uri)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    client = mlflow.MlflowClient()
    for run in mlflow.search_runs(experiment_names=[experiment_name], output_format="list"):
        texts = [json.dumps(run.data.params), json.dumps(run.data.tags),
                 json.dumps([i.dataset.source for i in run.inputs.dataset_inputs])]
        folder = tmp_path / run.info.run_id
        client.download_artifacts(run.info.run_id, "", str(folder))
        texts += [path.read_bytes().decode("latin-1") for path in folder.rglob("*") if path.is_file()]
        for value in secrets.values():
            assert not any(value in text for text in texts), f"{value} leaked into run {run.info.run_name}"
