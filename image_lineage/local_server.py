"""Start a real ``mlflow server`` on a free loopback port (tests and benchmarks; never mocked)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 180  # ~30 s is usual on a 2-core machine; a loaded CI box can take longer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``mlflow server`` with a sqlite backend (or ``backend_store_uri``) and proxied artifacts under ``root``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``extra_args`` go to the server
    command (e.g. ``("--app-name", "basic-auth")``). ``workers=None`` keeps MLflow's default (4), as
    a user's plain ``mlflow server`` has; tests use 1 to start faster and spare memory. ``port`` lets a
    restarted server come back where its clients expect it.
    """

    def __init__(self, root: str | Path, extra_args: tuple[str, ...] = (), env: dict | None = None, workers: int | None = 1,
                 backend_store_uri: str | None = None, port: int | None = None):
        self.root = Path(root)
        self.extra_args = extra_args
        self.workers = workers
        self.env = env
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", str(self.root / "artifacts"),
            *(("--workers", str(self.workers)) if self.workers else ()), *self.extra_args,
        ]

    def start(self) -> "LocalServer":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        try:
            self.wait_until_healthy()
        except Exception:
            self.stop()
            raise
        return self

    def wait_until_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
