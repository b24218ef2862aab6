"""Start a real ``mlflow server`` on a free loopback port (tests and benchmarks; never mocked)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

START_TIMEOUT_S = 180  # ~30 s is usual on a 2-core machine; a loaded CI box can take longer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``mlflow server`` with a sqlite backend (or ``backend_store_uri``) and proxied artifacts under ``root``
    (or ``artifacts_destination``, e.g. an s3:// bucket).

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``extra_args`` go to the server
    command (e.g. ``("--app-name", "basic-auth")``). ``workers=None`` keeps MLflow's default (4), as
    a user's plain ``mlflow server`` has; tests use 1 to start faster and spare memory. ``port`` lets a
    restarted server come back where its clients expect it.
    """

    def __init__(self, root: str | Path, extra_args: tuple[str, ...] = (), env: dict | None = None, workers: int | None = 1,
                 backend_store_uri: str | None = None, port: int | None = None, artifacts_destination: str | None = None):
        self.root = Path(root)
        self.extra_args = extra_args
        self.workers = workers
        self.env = env
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination or str(self.root / "artifacts")  # or s3://bucket/path
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_store_uri,
            "--artifacts-destination", self.artifacts_destination,
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


class LoopbackS3:
    """An S3-compatible server on a loopback port (moto's standalone server, a test/bench dependency: MinIO
    is not on PyPI), counting the requests it answers by method, and object GETs apart.

    ``env`` holds what a client needs (endpoint and a key pair; moto accepts any key), for boto3 and for
    ``mlflow server --artifacts-destination s3://...``. ``stop_after_gets`` makes it drop the connection
    from the n-th object GET on, as a server that dies mid-read does."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
                    "AWS_ACCESS_KEY_ID": "loopback-key", "AWS_SECRET_ACCESS_KEY": "loopback-secret",
                    "AWS_DEFAULT_REGION": "us-east-1"}
        self.counts: dict[str, int] = {}
        self.stop_after_gets: int | None = None
        self._server = None
        self._thread = None

    def object_gets(self) -> int:
        return self.counts.get("GET object", 0)

    def _app(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        moto_app = DomainDispatcherApplication(create_backend_app)

        def counting(environ, start_response):
            method, path, query = environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
            kind = "GET object" if method == "GET" and path.strip("/").count("/") >= 1 and not query.startswith(
                ("list-type", "versions", "versioning", "delimiter", "prefix")) else method
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "GET object" and self.stop_after_gets is not None and self.counts[kind] > self.stop_after_gets:
                threading.Thread(target=self.stop, daemon=True).start()  # from now on: connection refused
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
            return moto_app(environ, start_response)

        return counting

    def start(self) -> "LoopbackS3":
        """Start (or start again, on the same port, with the objects it held: moto keeps them in memory)."""
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args) -> None:  # one stderr line per request drowns the test output
                pass

        self._server = make_server("127.0.0.1", self.port, self._app(), threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def running(self) -> bool:
        return self._server is not None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> None:
        """Every file under ``folder`` to ``s3://bucket/prefix/<relative path>`` (the bucket is created)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            client.upload_file(str(path), bucket, f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}")

    def __enter__(self) -> "LoopbackS3":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LoopbackGCS:
    """A Google Cloud Storage emulator (gcp-storage-emulator, a test dependency) on a loopback port, objects in
    memory. ``env`` is what ``google.cloud.storage`` needs to use it (``STORAGE_EMULATOR_HOST``: no credentials)."""

    def __init__(self):
        self.port = free_port()
        self.env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.port}"}
        self._server = None

    def __enter__(self) -> "LoopbackGCS":
        from gcp_storage_emulator.server import create_server

        self._server = create_server("127.0.0.1", self.port, in_memory=True)
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.env["STORAGE_EMULATOR_HOST"]})


# Azurite's documented development key (public; the emulator accepts no other)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class LoopbackAzurite:
    """Azurite, Microsoft's Azure Blob Storage emulator (npm; ``make test`` installs it in .venv/azurite), on a
    loopback port, blobs in memory. ``env`` is what MLflow's Azure repository needs to use it
    (``AZURE_STORAGE_CONNECTION_STRING``); its account is ``devstoreaccount1``."""

    ACCOUNT = "devstoreaccount1"

    def __init__(self, program: str):
        self.port = free_port()
        self.program = program
        self.env = {"AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName={self.ACCOUNT};"
                    f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/{self.ACCOUNT};"}
        self._process = None

    @staticmethod
    def find() -> str | None:
        """The ``azurite-blob`` program: the one ``make test`` installs, else one on PATH."""
        installed = Path(sys.prefix) / "azurite" / "node_modules" / ".bin" / "azurite-blob"
        return str(installed) if installed.is_file() else shutil.which("azurite-blob")

    def __enter__(self) -> "LoopbackAzurite":
        # no telemetry: this machine reaches no outside host, and Azurite's failed lookups fill the log
        self._process = subprocess.Popen([self.program, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                                          "--inMemoryPersistence", "--skipApiVersionCheck", "--disableTelemetry",
                                          "--silent"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"{self.program} did not start on port {self.port}")
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def container_client(self, container: str):
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.env["AZURE_STORAGE_CONNECTION_STRING"])
        return service.get_container_client(container)
