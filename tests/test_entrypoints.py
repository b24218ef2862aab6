"""The command-line entry points as users call them: flags, exit codes, clear errors."""

import dataclasses

import mlflow
import pytest
import yaml

from entrypoints import check_dataset, coco_finetune, compare, log_folder_dataset, log_hf_dataset, train_registry
from entrypoints import main as main_entry
from image_lineage.flows.check import CheckRequest
from image_lineage.flows.finetune import FinetuneRequest
from image_lineage.flows.folder_version import FolderVersionRequest
from image_lineage.flows.hf_log import HfRequest
from image_lineage.flows.registry_lab import RegistryRequest
from image_lineage.flows.workflow import MainRequest
from tests_paths import PROJECT_ROOT


def test_log_folder_dataset_cli(bundled_images, experiment_name, sqlite_uri):
    code = log_folder_dataset.main(
        ["--data-dir", str(bundled_images), "--version", "v2", "--experiment-name", experiment_name]
    )
    assert code == 0
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert run.info.run_name == "image_v2" and run.data.params["dataset_version"] == "2.0.0"


def test_missing_version_exits_2_listing_versions(bundled_images, experiment_name, sqlite_uri, caplog):
    code = log_folder_dataset.main(["--data-dir", str(bundled_images), "--version", "v9", "--experiment-name", experiment_name])
    assert code == 2
    assert "versions found: v1, v2" in caplog.text


def test_unreachable_server_fails_fast(monkeypatch, caplog, bundled_images):
    import time

    from support.local_server import free_port

    port = free_port()  # nobody listens on it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    code = log_folder_dataset.main(["--data-dir", str(bundled_images), "--version", "v1"])
    assert code == 2 and time.monotonic() - started < 30
    assert f"127.0.0.1:{port} is not reachable" in caplog.text
    assert f"mlflow server --host 127.0.0.1 --port {port}" in caplog.text  # the server it names, not 5000


ENTRY_POINTS = {"main": main_entry, "log_folder_dataset": log_folder_dataset, "log_hf_dataset": log_hf_dataset,
                "coco_finetune": coco_finetune, "train_registry": train_registry, "compare": compare,
                "check_dataset": check_dataset}
REQUESTS = {"main": MainRequest, "log_folder_dataset": FolderVersionRequest, "log_hf_dataset": HfRequest,
            "coco_finetune": FinetuneRequest, "train_registry": RegistryRequest, "check_dataset": CheckRequest}
CLI_ONLY = {"experiment_name", "project_dir"}  # flags for use outside `mlflow run`, which sets both itself


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_mlproject_and_parser_have_the_same_parameters(name):
    entry = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"][name]
    dests = {a.dest for a in ENTRY_POINTS[name].build_parser()._actions if a.dest != "help"}
    assert set(entry["parameters"]) == dests - CLI_ONLY
    launcher, _, arguments = entry["command"].partition(f"-m entrypoints.{name} ")
    assert launcher == "python "  # multi-process training starts torchrun itself (coco_finetune --nproc-per-node)
    for parameter in entry["parameters"]:
        assert f"{flag(parameter)} {{{parameter}}}" in arguments, parameter


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_mlproject_defaults_equal_parser_and_request_defaults(name):
    entry = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"][name]
    parser = ENTRY_POINTS[name].build_parser()
    required = [arg for p, spec in entry["parameters"].items() if "default" not in spec for arg in (flag(p), "x")]
    typed = [arg for p, spec in entry["parameters"].items() if "default" in spec
             for arg in (flag(p), str(spec["default"]))]
    parsed = vars(parser.parse_args(required))
    assert vars(parser.parse_args(required + typed)) == parsed  # MLproject's defaults, as typed, change nothing
    assert not any(value in ("auto", "none") for value in parsed.values())  # placeholders end at the CLI edge
    if name in REQUESTS:
        fields = {f.name: f.default for f in dataclasses.fields(REQUESTS[name]) if f.default is not dataclasses.MISSING}
        assert {k: v for k, v in parsed.items() if k in fields} == {k: fields[k] for k in parsed if k in fields}


def test_placeholders_become_none_at_the_cli_edge():
    args = coco_finetune.build_parser().parse_args(["--weights", "none", "--device", "auto", "--resume-from", "none"])
    assert args.weights is None and args.device is None and args.resume_from is None and args.amp is None
    assert coco_finetune.build_parser().parse_args(["--weights", "/tmp/w.pt"]).weights == "/tmp/w.pt"
    assert compare.build_parser().parse_args(["--experiment", "e", "--models", "a, b"]).models == ["a", "b"]


def test_experiments_open_on_training_runs_and_keep_a_kind_already_set(bundled_images, experiment_name, sqlite_uri):
    assert log_folder_dataset.main(["--data-dir", str(bundled_images), "--version", "v1", "--experiment-name", experiment_name]) == 0
    assert mlflow.get_experiment_by_name(experiment_name).tags["mlflow.experimentKind"] == "custom_model_development"
    other = f"{experiment_name}_genai"
    mlflow.MlflowClient().create_experiment(other, tags={"mlflow.experimentKind": "genai_development"})
    assert log_folder_dataset.main(["--data-dir", str(bundled_images), "--version", "v1", "--experiment-name", other]) == 0
    assert mlflow.get_experiment_by_name(other).tags["mlflow.experimentKind"] == "genai_development"


def test_conda_env_installs_what_the_package_needs():
    """`mlflow run .` without --env-manager builds conda.yaml's environment: the same pip requirements as
    pyproject's dependencies, so a feature that works after `make install` works there too."""
    import tomllib

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    (pip_block,) = [entry["pip"] for entry in conda["dependencies"] if isinstance(entry, dict)]
    assert sorted(pip_block) == sorted(project["project"]["dependencies"])


def test_only_the_projects_own_error_is_a_one_line_exit_2(monkeypatch, bundled_images, sqlite_uri, caplog):
    """A LineageError is the user's to fix: one line, exit 2. Anything else (a KeyError bug, say) is not: it
    propagates with its traceback (exit 1 from `python -m`), never printed as if it were the user's."""
    import image_lineage.flows.folder_version as folder_version
    from image_lineage.core.errors import LineageError

    def user_error(request):
        raise LineageError("data_dir 'x' is not what you meant")

    def bug(request):
        return {}["label"]

    monkeypatch.setattr(folder_version, "log_folder_version", user_error)
    assert log_folder_dataset.main(["--data-dir", str(bundled_images)]) == 2
    assert "data_dir 'x' is not what you meant" in caplog.text
    monkeypatch.setattr(folder_version, "log_folder_version", bug)
    with pytest.raises(KeyError, match="label"):
        log_folder_dataset.main(["--data-dir", str(bundled_images)])


def test_sigterm_ends_the_run_failed_and_says_so(monkeypatch, bundled_images, sqlite_uri, experiment_name, caplog):
    """What Kubernetes sends a pod it evicts: the run must not stay RUNNING forever (it did)."""
    import os
    import signal
    import time

    import image_lineage.flows.folder_version as folder_version
    from image_lineage.tracking.runs import start_run

    started = []

    def evicted(request):
        with start_run(request.experiment_name, "evicted") as run:
            started.append(run.info.run_id)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the signal's handler raises within this sleep
            mlflow.log_param("after", "the signal")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(folder_version, "log_folder_version", evicted)
    assert log_folder_dataset.main(["--data-dir", str(bundled_images), "--experiment-name", experiment_name]) == 143
    run = mlflow.get_run(started[0])
    assert run.info.status == "FAILED" and "after" not in run.data.params
    assert "stopped by SIGTERM" in caplog.text and signal.getsignal(signal.SIGTERM) == before


def test_one_set_of_run_links_which_open_the_training_view(bundled_images, experiment_name, server_uri, monkeypatch,
                                                           capsys):
    """MLflow's own "View run" links open its GenAI view: the README's homework block silences them, and ours,
    which ask for the training view, are printed all the same (IMAGE_LINEAGE_RUN_LINKS=off silences ours)."""
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    argv = ["--data-dir", str(bundled_images), "--version", "v1", "--experiment-name", experiment_name]
    assert log_folder_dataset.main(argv) == 0
    links = [line for line in capsys.readouterr().out.splitlines() if "View run" in line]
    assert len(links) == 1 and "workflowType=machine_learning" in links[0] and server_uri in links[0]
    monkeypatch.setenv("IMAGE_LINEAGE_RUN_LINKS", "off")
    assert log_folder_dataset.main(argv) == 0
    assert "View run" not in capsys.readouterr().out


def test_another_dataset_name_names_the_runs_after_it(bundled_images, experiment_name, sqlite_uri):
    argv = ["--data-dir", str(bundled_images), "--version", "v2", "--experiment-name", experiment_name]
    assert log_folder_dataset.main([*argv, "--dataset-name", "my_pets"]) == 0
    assert log_folder_dataset.main(argv) == 0  # the homework's own dataset name keeps image_<version>
    names = {run.info.run_name for run in mlflow.search_runs(experiment_names=[experiment_name], output_format="list")}
    assert names == {"my_pets_v2", "image_v2"}


def test_two_first_runs_into_a_new_sqlite_store_both_finish(bundled_images, tmp_path):
    """MLflow creates a sqlite store's tables on first use, without a lock: the second of two first runs died
    inside the schema creation ("table metrics already exists", alembic "expected to match one row")."""
    import os
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/new.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    command = [sys.executable, "-m", "entrypoints.log_folder_dataset", "--data-dir", str(bundled_images), "--version"]
    runs = [subprocess.Popen([*command, version, "--experiment-name", f"first_{version}"], cwd=PROJECT_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for version in ("v1", "v2")]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    client = mlflow.MlflowClient(uri)
    for version in ("v1", "v2"):
        (run,) = client.search_runs([client.get_experiment_by_name(f"first_{version}").experiment_id])
        assert run.info.status == "FINISHED"
