"""Files into a run: staged in one temporary folder, uploaded in one go, on a few threads."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import mlflow

from image_lineage.tracking import _compat

UPLOAD_WORKERS = 8


@contextlib.contextmanager
def staging(prefix: str = "image_lineage_") -> Iterator[Path]:
    """A temporary folder to lay a run's files out in before one upload; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def write_files(files: dict[str, str], folder: Path) -> None:
    """Text files (``{relative path: text}``) under ``folder``."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def upload_files(files: dict[str, str], artifact_path: str | None = None) -> None:
    """Text files (``{relative path: text}``) into the active run, in one go."""
    with staging() as folder:
        write_files(files, folder)
        upload_folder(folder, artifact_path)


def upload_folder(local_dir: str | Path, artifact_path: str | None = None, workers: int = UPLOAD_WORKERS) -> int:
    """Upload every file under ``local_dir`` to the active run; return the number of files.

    MLflow's HTTP artifact repository sends one PUT per file, one after another, and
    ``MlflowClient.log_artifact`` looks the run up again for every file. Here one repository object
    serves every file and a small thread pool sends the PUTs, hiding most of the per-request latency
    (staging folders hold a few hundred files at most: full sets travel as one archive).
    """
    repository = _compat.artifact_repository(mlflow.active_run().info.artifact_uri)
    root = Path(local_dir)
    jobs = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        parent = file.parent.relative_to(root).as_posix()
        destination = "/".join(part for part in (artifact_path, parent) if part and part != ".") or None
        jobs.append((file, destination))
    with ThreadPoolExecutor(workers) as pool:
        # list() re-raises the first failed upload, so the run ends FAILED rather than partial.
        list(pool.map(lambda job: repository.log_artifact(str(job[0]), job[1]), jobs))
    return len(jobs)


def link_or_copy(source: str | Path, destination: str | Path) -> None:
    """Stage a file for upload without reading or touching it: a symbolic link (the upload reads through it),
    or a copy where links are not allowed. Not a hard link: adding a name to the file changes its ctime, which
    the record cache keys on, so every later step of ``main`` read the staged samples again."""
    try:
        os.symlink(Path(source).resolve(), destination)
    except OSError:  # links not allowed (Windows without the privilege, some mounts)
        shutil.copyfile(source, destination)
