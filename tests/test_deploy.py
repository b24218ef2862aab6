"""deploy/: the recipes load with MLflow's own loaders, and the compose server command runs for real
(PostgreSQL backend store on loopback, no Docker) with the folder-dataset and registry flows through it."""

import glob
import json
import os
import shutil
import subprocess
import tempfile

import mlflow
import pytest
import yaml
from tests_paths import PROJECT_ROOT

from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.registry_lab import RegistryRequest, WINE_MODEL, run_registry_workflow
from support.local_server import LocalServer, free_port

DEPLOY = PROJECT_ROOT / "deploy"


def test_kubernetes_project_loads_with_mlflows_loader(monkeypatch):
    from mlflow.projects import _parse_kubernetes_config
    from mlflow.projects._project_spec import load_project

    project = load_project(str(DEPLOY / "kubernetes"))
    assert project.docker_env["image"] == "image-lineage:latest"
    command = project.get_entry_point("coco_finetune").compute_command({"data_dir": "/data/coco"}, storage_dir=None)
    assert command.startswith("python -m entrypoints.coco_finetune --nproc-per-node 1 --data-dir /data/coco")
    monkeypatch.chdir(PROJECT_ROOT)  # the config names the template relative to the repository root
    config = _parse_kubernetes_config(json.loads((DEPLOY / "kubernetes/kubernetes_config.json").read_text()))
    assert {"kube-context", "repository-uri", "kube-job-template"} <= set(config)
    # what mlflow.projects.kubernetes._get_kubernetes_job_definition fills in must exist
    job = config["kube-job-template"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["kind"] == "Job" and "name" in job["metadata"]
    assert {"name", "image", "command"} <= set(container) and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    dockerfile = (DEPLOY / "kubernetes/Dockerfile").read_text()
    assert "pip install --no-cache-dir ." in dockerfile and "COPY entrypoints" in dockerfile


def test_databricks_cluster_spec():
    spec = json.loads((DEPLOY / "databricks/cluster.json").read_text())
    assert {"spark_version", "node_type_id", "num_workers"} <= set(spec)
    assert "gpu-ml" in spec["spark_version"] and spec["num_workers"] == 0
    assert spec["spark_conf"]["spark.databricks.cluster.profile"] == "singleNode"
    readme = (DEPLOY / "databricks/README.md").read_text()
    assert "13.0 ML" in readme and "-b databricks" in readme


def test_compose_recipe_is_consistent():
    compose = yaml.safe_load((DEPLOY / "compose/docker-compose.yml").read_text())
    assert {"postgres", "minio", "create-bucket", "mlflow"} <= set(compose["services"])
    command = compose["services"]["mlflow"]["command"]
    assert "--backend-store-uri postgresql+psycopg://" in command and "--artifacts-destination s3://" in command
    env_names = {line.split("=")[0] for line in (DEPLOY / "compose/.env.example").read_text().splitlines()
                 if line and not line.startswith("#")}
    used = {name for name in env_names if "${" + name + "}" in (DEPLOY / "compose/docker-compose.yml").read_text()}
    assert used == env_names


def postgres_binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope="module")
def postgres_uri():
    """A throwaway PostgreSQL on a free loopback port (as the postgres user when the tests run as root)."""
    bin_dir = postgres_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed here (.ci/run installs Debian's postgresql)")
    root = tempfile.mkdtemp(prefix="pg_", dir="/tmp")
    as_user = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = os.path.join(root, "data")

    def pg(*command):
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    pg(f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "mlflow")
    pg(f"{bin_dir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "-o",
       f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    try:
        pg(f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql+psycopg://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        pg(f"{bin_dir}/pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.long(seconds=38)
def test_server_on_postgresql_runs_the_folder_and_registry_flows(postgres_uri, tmp_path, monkeypatch, bundled_images):
    with LocalServer(tmp_path / "server", backend_store_uri=postgres_uri) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        mlflow.set_tracking_uri(server.uri)
        for version in ("v1", "v2"):
            log_folder_version(FolderVersionRequest(data_dir=str(bundled_images), version=version, experiment_name="pg_flow"))
        runs = mlflow.search_runs(experiment_names=["pg_flow"], order_by=["attributes.run_name ASC"], output_format="list")
        assert [(r.info.run_name, r.data.metrics["total_images"]) for r in runs] == [("image_v1", 2), ("image_v2", 3)]
        report = run_registry_workflow(RegistryRequest(suite="wine", experiment_name="pg_flow"))["wine"]
        champion = mlflow.MlflowClient().get_model_version_by_alias(WINE_MODEL, "champion")
        assert champion.version == report.aliases["champion"]
