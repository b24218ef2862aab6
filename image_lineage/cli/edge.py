"""What every command does around its work: logging, the tracking setup, quick ACKs, clear errors.

Only the project's own error (:class:`image_lineage.core.errors.LineageError`) is the user's to fix: its
message is printed as one line and the command exits with code 2. Any other exception is a bug or a fault
and shows its traceback (exit 1). Either way a run it interrupts ends FAILED. So does SIGTERM (what
Kubernetes sends a pod it evicts, and ``timeout``): Python would otherwise die at once and leave the run
RUNNING forever; here it ends the run FAILED, says so, and exits 143 as a killed process would.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
from typing import Callable, Iterator

from image_lineage.core import config
from image_lineage.core.errors import LineageError

LOGGER = logging.getLogger("image_lineage")


def run_entry_point(work: Callable[[], object]) -> int:
    """Set up logging and tracking, run ``work``; the project's own errors become one clear line and exit code 2.

    The work runs with quick ACKs (:mod:`image_lineage.tracking._quick_ack`: a plain ``mlflow server`` would
    add ~40 ms to each REST call) unless ``IMAGE_LINEAGE_QUICK_ACK=off``; this process is the command's own."""
    # imported here: `image-lineage --help` and argument errors answer without loading MLflow (~2 s)
    from image_lineage.tracking._quick_ack import quick_acks
    from image_lineage.tracking.connection import configure_tracking

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with terminated_as_exception():
            configure_tracking()
            if not config.quick_acks_wanted():
                work()
                return 0
            with quick_acks():
                work()
    except LineageError as exc:
        LOGGER.error("%s", exc)
        return 2
    except Terminated:
        LOGGER.error("stopped by SIGTERM: a run in progress was ended FAILED")
        return 128 + signal.SIGTERM
    return 0


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, as KeyboardInterrupt is, so no ``except Exception`` on the way
    swallows it; the run's context manager ends the run FAILED on the way out."""


@contextlib.contextmanager
def terminated_as_exception() -> Iterator[None]:
    """While the command works, SIGTERM raises :class:`Terminated` in the main thread (the previous handler
    comes back after). Signal handlers can only be set from the main thread: elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_on_processes(argv: list[str], nproc: int, work: Callable[[], object]) -> int:
    """One process: ``run_entry_point(work)`` here, so a failure ends on our one line (no torchrun wrapper
    printing its ChildFailedError report after it). More: ``torchrun --standalone`` starts ``nproc`` copies
    of ``python -m image_lineage.cli`` with ``argv`` (the command and its flags; each copy sees ``LOCAL_RANK``
    and runs ``work``); its exit code is returned."""
    if nproc <= 1 or config.under_torchrun():
        return run_entry_point(work)
    return subprocess.call([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={nproc}", "-m", "image_lineage.cli", *argv])
