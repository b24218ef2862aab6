"""`mlflow run` as users type it, from a git clone of the project, against the live server."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import dataset_metrics
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


def mlflow_run(args: list[str], tracking_uri: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess:
    # a new shell: not the experiment this test process last set (mlflow.set_experiment exports its id)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, **extra_env)
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
    assert dataset_metrics(run) == {"total_images": 3, "class_cat_count": 1, "class_dog_count": 2}


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


def test_mlflow_run_git_url_with_version(project_clone, server_uri, experiment_name, tmp_path):
    clone, commit = project_clone
    done = mlflow_run(
        [f"file://{clone}", "-e", "log_folder_dataset", "--version", commit, "-P", "version=v1",
         "--experiment-name", experiment_name, "--env-manager", "local"],
        server_uri, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.data.tags["mlflow.source.git.commit"] == commit and run.info.run_name == "image_v1"


@pytest.mark.long(seconds=87)
def test_main_from_clone_end_to_end_then_reused(project_clone, server_uri, experiment_name, tmp_path):
    import time

    from image_lineage.flows.comparison import model_versions_table
    from image_lineage.flows.workflow import TAG_STEP_KEY
    from image_lineage.tracking.lineage import datasets_of_version, versions_trained_on
    from image_lineage.tracking.model_registry import model_id_of

    clone, commit = project_clone
    args = [f"file://{clone}", "--experiment-name", experiment_name, "--env-manager", "local"]
    started = time.monotonic()
    read_log = tmp_path / "image_reads.log"
    first = mlflow_run(args, server_uri, cwd=tmp_path, IMAGE_LINEAGE_READ_LOG=str(read_log))
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-3000:]
    # one image pass: across main and its seven step processes, the lineage read each image file once
    # (the image record cache answers every later step); uploads and training decodes are not lineage reads
    reads = read_log.read_text().splitlines()
    images = sorted(str(p) for folder in ("image_dataset", "coco/sample") for p in (clone / folder).rglob("*")
                    if p.suffix in (".jpg", ".png"))
    assert sorted(reads) == images
    runs = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    (parent,) = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    steps = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["mlflow.project.entryPoint"] for r in steps) == sorted(
        ["log_folder_dataset", "log_folder_dataset", "log_hf_dataset", "log_hf_dataset", "coco_finetune",
         "train_registry", "compare"])
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.source.git.commit"] == commit for r in steps)

    started = time.monotonic()
    second = mlflow_run(args, server_uri, cwd=tmp_path)
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-3000:]
    again = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    new_steps = [r for r in again if r.info.run_id not in {x.info.run_id for x in runs}
                 and r.data.tags.get("mlflow.project.entryPoint") != "main"]
    assert [r.data.tags["mlflow.project.entryPoint"] for r in new_steps] == ["compare"]  # all others reused
    assert second_seconds < first_seconds / 2

    # compare's tables match the runs; lineage answers both questions on these known runs
    detector = [r for r in steps if r.data.tags["mlflow.project.entryPoint"] == "coco_finetune"][0]
    table = model_versions_table("coco_sample_detector")
    row = table[table["Run ID"] == detector.info.run_id].iloc[0]
    assert row["mAP"] == round(detector.data.metrics["mAP"], 4)
    trained = versions_trained_on(detector.data.tags["dataset.digest.train"])
    assert ("coco_sample_detector", int(row["Version"])) in set(zip(trained["Model"], trained["Version"]))
    used = datasets_of_version("coco_sample_detector", str(row["Version"]))
    assert set(used["Dataset"]) == {"coco_train", "coco_validation"}
    # MLflow 3's own query: the demo detector is the model measured on the COCO sample's validation digest
    validation = {"dataset_name": "coco_validation", "dataset_digest": detector.data.tags["dataset.digest.validation"][:32]}
    found = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], datasets=[validation],
                                        output_format="list")
    version = mlflow.MlflowClient().get_model_version("coco_sample_detector", str(row["Version"]))
    assert [m.model_id for m in found] == [model_id_of(version)] and found[0].source_run_id == detector.info.run_id
    assert all(TAG_STEP_KEY in r.data.tags for r in steps if r.data.tags["mlflow.project.entryPoint"] != "compare")


def test_compare_run_lives_in_the_experiment_it_compares(project_clone, server_uri, experiment_name, tmp_path):
    from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version

    clone, _ = project_clone
    log_folder_version(FolderVersionRequest(data_dir=str(clone / "image_dataset"), version="v1", experiment_name=experiment_name))
    done = mlflow_run([str(clone), "-e", "compare", "--experiment-name", experiment_name, "--env-manager", "local"],
                      server_uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {r.info.run_name: r.info.status for r in mlflow.search_runs(experiment_names=[experiment_name], output_format="list")}
    assert names == {"image_v1": "FINISHED", "compare": "FINISHED"}
    # naming the compared experiment only as a parameter would leave the run elsewhere: refused, nothing logged
    other = f"{experiment_name}_other"
    refused = mlflow_run([str(clone), "-e", "compare", "-P", f"experiment={experiment_name}", "--experiment-name", other,
                          "--env-manager", "local"], server_uri, cwd=tmp_path)
    assert refused.returncode != 0
    assert f"mlflow run . -e compare --experiment-name {experiment_name}" in "\n".join(refused.stderr.splitlines()[-3:])
    (failed,) = mlflow.search_runs(experiment_names=[other], output_format="list")
    assert failed.info.status == "FAILED" and not mlflow.MlflowClient().list_artifacts(failed.info.run_id)


def test_dead_server_through_mlflow_run_fails_fast_naming_the_uri(project_clone, tmp_path):
    import time

    from support.local_server import free_port

    clone, _ = project_clone
    port = free_port()  # nobody listens on it
    started = time.monotonic()
    # the two exports of the README's tracking-server block
    done = mlflow_run([str(clone), "-e", "log_folder_dataset", "-P", "version=v1", "--env-manager", "local"],
                      f"http://127.0.0.1:{port}", cwd=tmp_path,
                      MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    assert time.monotonic() - started < 30 and done.returncode != 0
    assert f"127.0.0.1:{port}" in done.stderr.strip().splitlines()[-1]


def test_coco_finetune_offline_weights_fail_before_logging(project_clone, server_uri, experiment_name, tmp_path):
    clone, _ = project_clone
    done = mlflow_run([str(clone), "-e", "coco_finetune", "-P", "model=fasterrcnn_mobilenet_v3_large_320_fpn",
                       "--experiment-name", experiment_name, "--env-manager", "local"],
                      server_uri, cwd=tmp_path, TORCH_HOME=str(tmp_path / "no_weights"))
    assert done.returncode != 0
    assert "ChildFailedError" not in done.stderr and "torch.distributed" not in done.stderr  # one process: no torchrun
    tail = "\n".join(done.stderr.strip().splitlines()[-3:])
    assert "-P weights=none" in tail, tail  # the last lines say what to do
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.status == "FAILED"
    assert not run.inputs.dataset_inputs and not mlflow.MlflowClient().list_artifacts(run.info.run_id)
