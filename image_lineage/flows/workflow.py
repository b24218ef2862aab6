"""The one-command workflow (``mlflow run .``): every entry point on the bundled data, as child runs.

Like MLflow's ``examples/multistep_workflow``, each step is an ``mlflow.projects.run`` of this project's
own entry point inside the parent run (so it becomes a child run), and a step is reused instead of run
again when a FINISHED earlier run of the experiment had the same inputs: the entry point, its parameters
as strings (MLflow stores parameters as strings), the git commit, and the content digest of its data.
That identity is hashed into the tag ``workflow.step_key`` of each step run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from image_lineage.core.errors import LineageError
from image_lineage.data.kinds import LoadOptions
from image_lineage.data.versions import holds_versions, versions_digest
from image_lineage.flows.ingest import read_source
from image_lineage.tracking.runs import start_run

LOGGER = logging.getLogger(__name__)

TAG_STEP_KEY = "workflow.step_key"
TAG_REUSED = "workflow.reused_run_id"


@dataclass
class Step:
    entry_point: str
    parameters: dict[str, str]
    data: list[str] = field(default_factory=list)  # folders whose content identifies the step's input
    cache: bool = True


@dataclass
class MainRequest:
    project_dir: str = "."
    image_dir: str = "image_dataset"
    coco_dir: str = "coco/sample"
    image_check: str = "structure"
    experiment_name: str | None = None
    run_name: str = "main"


def workflow_steps(request: MainRequest, experiment: str) -> list[Step]:
    """The assignments' whole workflow on the bundled data, offline, small enough for a 2-core CPU."""
    v2 = f"{request.image_dir}/v2"
    check = {"image_check": request.image_check}
    return [
        Step("log_folder_dataset", {"data_dir": request.image_dir, "version": "v1", **check}, [request.image_dir]),
        Step("log_folder_dataset", {"data_dir": request.image_dir, "version": "v2", **check}, [request.image_dir]),
        Step("log_hf_dataset", {"source": v2, **check}, [v2]),
        Step("log_hf_dataset", {"source": request.coco_dir, **check}, [request.coco_dir]),
        Step("coco_finetune", {"data_dir": request.coco_dir, "weights": "none", "epochs": "1", "max_images": "4",
                               "model": "fasterrcnn_mobilenet_v3_large_320_fpn", "image_size": "160",
                               "register_as": "coco_sample_detector", **check}, [request.coco_dir]),
        Step("train_registry", {"suite": "both", "mnist_source": "sklearn-digits", "epochs_scale": "0.02"}),
        Step("compare", {"experiment": experiment}, cache=False),  # summarizes whatever the others logged
    ]


def data_digest(path: Path, image_check: str = "structure") -> str:
    """Content digest of a step's data, by the same stages the steps take: a folder of versions (every
    version's digest; folders beside them that are no version passed over, as the steps pass them over),
    or any source a kind reads (a COCO folder: images and annotations of every split).

    The image pass caches what it reads (with the perceptual hashes the steps' leakage checks need), so
    the steps that read the same files after this read none."""
    options = LoadOptions(image_check=image_check, perceptual=True)
    if holds_versions(path):
        return versions_digest(str(path), options)
    return read_source(str(path), options=options).digest


def git_commit(project_dir: Path) -> str:
    done = subprocess.run(["git", "-C", str(project_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def step_key(step: Step, commit: str, data_digests: dict[str, str]) -> str:
    identity = {
        "entry_point": step.entry_point,
        "parameters": {k: str(v) for k, v in sorted(step.parameters.items())},
        "git_commit": commit,
        "data": {path: data_digests[path] for path in step.data},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def find_finished_step(experiment_id: str, key: str) -> str | None:
    runs = mlflow.search_runs([experiment_id], filter_string=f"tags.`{TAG_STEP_KEY}` = '{key}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    return runs[0].info.run_id if runs else None


def run_step(step: Step, experiment_id: str, project_dir: Path, commit: str, data_digests: dict[str, str]) -> tuple[str, bool]:
    """(run id, reused?) for one step; a failed step raises, which fails the parent run."""
    key = step_key(step, commit, data_digests) if step.cache else None
    reused = find_finished_step(experiment_id, key) if key else None
    if reused:
        LOGGER.info("step %s %s: reusing FINISHED run %s", step.entry_point, step.parameters, reused)
        return reused, True
    LOGGER.info("step %s %s: running", step.entry_point, step.parameters)
    submitted = mlflow.projects.run(str(project_dir), entry_point=step.entry_point, parameters=step.parameters,
                                    experiment_id=experiment_id, env_manager="local", synchronous=True)
    if key:
        mlflow.MlflowClient().set_tag(submitted.run_id, TAG_STEP_KEY, key)
    return submitted.run_id, False


def check_data_folders(request: MainRequest, project_dir: Path) -> None:
    """Before any run: each data folder exists (the steps read them relative to the project folder)."""
    for name in ("image_dir", "coco_dir"):
        value = getattr(request, name)
        if not (project_dir / value).is_dir():
            raise LineageError(f"{name} {value!r} is not a folder (read relative to the project folder {project_dir}): "
                               f"pass -P {name}=<folder>.")


def run_main(request: MainRequest) -> list[dict]:
    """Run (or reuse) every step as a child of one parent run; return one row per step."""
    project_dir = Path(request.project_dir).resolve()
    check_data_folders(request, project_dir)
    commit = git_commit(project_dir)
    rows = []
    with start_run(request.experiment_name, request.run_name, job="main") as parent:
        experiment = mlflow.get_experiment(parent.info.experiment_id).name
        steps = workflow_steps(request, experiment)
        # each data folder is hashed once, though several steps read it
        data_digests = {path: data_digest(project_dir / path, request.image_check)
                        for path in {p for step in steps for p in step.data}}
        for step in steps:
            started = time.perf_counter()
            run_id, reused = run_step(step, parent.info.experiment_id, project_dir, commit, data_digests)
            if reused:  # record the reuse on the parent, and keep the reused run findable from here
                mlflow.set_tag(f"{TAG_REUSED}.{len(rows) + 1}", run_id)
            rows.append({"step": len(rows) + 1, "entry_point": step.entry_point,
                         "parameters": json.dumps(step.parameters), "run_id": run_id, "reused": reused,
                         "seconds": round(time.perf_counter() - started, 1)})
        mlflow.log_table(data={k: [row[k] for row in rows] for k in rows[0]}, artifact_file="workflow_steps.json")
    for row in rows:
        print(f"step {row['step']}: {row['entry_point']:<18} {'reused' if row['reused'] else 'ran   '} "
              f"{row['run_id']}  {row['seconds']:6.1f} s")
    return rows
