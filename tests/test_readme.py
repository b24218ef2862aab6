"""The command blocks of the README and then of docs/, pasted in order into one new shell in a fresh clone, as
a user would.

The clone sees the `.venv` that `make test` built (linked in: a user runs the blocks after the two set-up
commands) and `../shared` beside it, but nothing of this test's environment: PATH is the system's, so the
blocks' own `source .venv/bin/activate` is what makes `mlflow` and the project importable. Lines starting
`mlflow server` are what this test's own server (a free port) stands for; the README's `127.0.0.1:5000`
is rewritten to it. Not run: the set-up block (`make demo`/`make test`, which run this) and the benchmarks
(minutes per bench, run on purpose).
"""

import os
import re
import subprocess

import mlflow
import pytest
from tests_paths import PROJECT_ROOT

from support.local_server import LocalServer

README = PROJECT_ROOT / "README.md"
# after the README, in this order (a newcomer's): every docs page with commands; benchmarks.md is not run
DOCS = ["entry-points.md", "python-api.md", "scale.md", "spark.md", "storage.md", "interop.md", "trace.md",
        "reliability.md", "ui-tour.md", "architecture.md"]
SKIPPED_SECTIONS = ("Start", "Benchmarks")
HOMEWORK_EXPERIMENT = "HW_Image_Dataset_6612345678"
ENTRY_POINTS = ("main", "log_folder_dataset", "log_hf_dataset", "coco_finetune", "check_dataset", "train_registry",
                "compare")


def command_blocks(text: str, page: str = "README") -> list[tuple[str, str]]:
    """(where, block) for each ```bash block of a page, outside skipped sections."""
    blocks = []
    for section in re.split(r"^## ", text, flags=re.M):
        title = section.splitlines()[0] if section else ""
        if title not in SKIPPED_SECTIONS:
            blocks.extend((f"{page}: {title}", block) for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S))
    return blocks


def all_blocks() -> list[tuple[str, str]]:
    blocks = command_blocks(README.read_text())
    for page in DOCS:
        blocks.extend(command_blocks((PROJECT_ROOT / "docs" / page).read_text(), f"docs/{page}"))
    return blocks


def shell_script(blocks: list[tuple[str, str]], server_uri: str) -> str:
    lines = ["set -euo pipefail"]
    for title, block in blocks:
        lines.append(f"echo '### README block in: {title}'")
        lines.extend(line.replace("http://127.0.0.1:5000", server_uri) for line in block.splitlines()
                     if not line.startswith("mlflow server "))
    return "\n".join(lines) + "\n"


def test_readme_blocks_are_commands_not_templates():
    blocks = all_blocks()
    assert len(blocks) >= 8 and any(where.startswith("README") for where, _ in blocks)
    assert {p.name for p in (PROJECT_ROOT / "docs").glob("*.md")} == {*DOCS, "benchmarks.md"}  # every page considered
    for title, block in blocks:
        assert not re.search(r"<[a-z][^>]*>", block), f"a placeholder in a README block ({title}): {block}"


@pytest.mark.long(seconds=415)
@pytest.mark.timeout(1600)  # pytest's 900 s is too short for this one on a slow machine: its blocks get 1500 s
def test_readme_blocks_work_pasted_into_a_new_shell(tmp_path):
    if not (PROJECT_ROOT / ".venv" / "bin" / "activate").exists():
        pytest.skip("no .venv: the README's blocks run after `make demo` / `make test` built it")
    clone = tmp_path / "clone" / "project"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    if (PROJECT_ROOT.parent / "shared").is_dir():
        (clone.parent / "shared").symlink_to(PROJECT_ROOT.parent / "shared")
    with LocalServer(tmp_path / "server") as server:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("MLFLOW_", "VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not p.startswith(str(PROJECT_ROOT / ".venv")))
        script = shell_script(all_blocks(), server.uri)
        done = subprocess.run(["bash", "-c", script], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
        client = mlflow.MlflowClient(server.uri)  # not the global tracking URI: this server stops here
        homework, default = (client.get_experiment_by_name(name) for name in (HOMEWORK_EXPERIMENT, "Default"))
        runs = client.search_runs([homework.experiment_id])
        runs_in_default = client.search_runs([default.experiment_id])
    assert runs and all(run.info.status == "FINISHED" for run in runs)
    # every entry point the blocks ran logged into the homework experiment (compare too), none into Default
    entry_points = {run.data.tags.get("mlflow.project.entryPoint") for run in runs}
    assert set(ENTRY_POINTS) <= entry_points
    assert {"image_v1", "image_v2"} <= {run.info.run_name for run in runs}
    assert not runs_in_default
