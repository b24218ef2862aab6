"""`mlflow run` as users type it, from a git clone of the project, against the live server."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from tests_paths import PROJECT_ROOT


@pytest.fixture(scope="module")
def project_clone(tmp_path_factory) -> tuple[Path, str]:
    """A fresh `git clone` of the committed project and its HEAD commit."""
    if subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("the project is not a git checkout with commits")
    clone = tmp_path_factory.mktemp("clone") / "project"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return clone, commit


def mlflow_run(args: list[str], tracking_uri: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    # --env-manager local runs the entry point with the `python` on PATH: this test's interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([sys.executable, "-m", "mlflow", "run", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_mlflow_run_from_git_clone_records_commit(project_clone, server_uri, experiment_name, tmp_path):
    clone, commit = project_clone
    done = mlflow_run(
        [f"file://{clone}", "-e", "log_folder_dataset", "-P", "version=v2", "--experiment-name", experiment_name, "--env-manager", "local"],
        server_uri, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FINISHED" and run.info.run_name == "image_v2"
    assert run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.params["dataset_version"] == "2.0.0"
    assert run.data.metrics == {"total_images": 3, "class_cat_count": 1, "class_dog_count": 2}


def test_mlflow_run_bad_version_ends_failed(project_clone, server_uri, experiment_name, tmp_path):
    clone, _ = project_clone
    done = mlflow_run(
        [str(clone), "-e", "log_folder_dataset", "-P", "version=v7", "--experiment-name", experiment_name, "--env-manager", "local"],
        server_uri, cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "versions found: v1, v2" in done.stderr
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FAILED"
