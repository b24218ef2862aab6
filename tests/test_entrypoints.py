"""The command-line entry points as users call them: flags, exit codes, clear errors."""

import mlflow
import yaml

from entrypoints import coco_finetune, compare, log_folder_dataset, log_hf_dataset, train_registry
from entrypoints import main as main_entry
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
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    started = time.monotonic()
    code = log_folder_dataset.main(["--data-dir", str(bundled_images), "--version", "v1"])
    assert code == 2 and time.monotonic() - started < 30
    assert f"127.0.0.1:{port} is not reachable" in caplog.text


def test_mlproject_parameters_match_parsers():
    spec = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    modules = {"main": main_entry, "log_folder_dataset": log_folder_dataset, "log_hf_dataset": log_hf_dataset,
               "coco_finetune": coco_finetune, "train_registry": train_registry, "compare": compare}
    assert set(spec["entry_points"]) == set(modules)
    for name, module in modules.items():
        entry = spec["entry_points"][name]
        launcher, _, arguments = entry["command"].partition(f"-m entrypoints.{name} ")
        assert launcher in ("python ", "torchrun --standalone --nproc_per_node {nproc_per_node} "), name
        flags = {a.dest for a in module.build_parser()._actions if a.dest != "help"}
        for parameter in entry["parameters"]:
            # every parameter reaches the command; those after the module are the parser's flags
            assert f"{{{parameter}}}" in entry["command"], parameter
            if f"{{{parameter}}}" in arguments:
                assert parameter in flags and f"--{parameter.replace('_', '-')} {{{parameter}}}" in arguments, parameter
