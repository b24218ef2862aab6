"""Running the same loop under ``torchrun``: one process per GPU (DDP), rank 0 the only one that logs."""

from __future__ import annotations

import functools
from datetime import timedelta

import torch
import torch.distributed as dist

from image_lineage.core import config
from image_lineage.core.errors import LineageError

# How long a rank waits for another's work outside training (a Spark data pass over a large dataset): NCCL's
# default timeout (10 minutes) would stop the waiting ranks first.
WAIT_TIMEOUT = timedelta(hours=6)


def init_distributed() -> bool:
    """Join the process group ``torchrun`` describes (RANK/WORLD_SIZE); False when not under torchrun."""
    if not config.under_torchrun() or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(config.local_rank())
    dist.init_process_group(backend)
    return True


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each rank's epoch means averaged over the ranks, so the logged losses describe every shard, not rank
    0's alone (every rank calls this, with the same keys)."""
    if not dist.is_initialized():
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return dict(zip(keys, (tensor / dist.get_world_size()).tolist()))


def gather_from_ranks(value, group=None) -> list:
    """``value`` of every rank, in rank order (one element without a process group)."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value, group=group)
    return gathered


@functools.lru_cache(maxsize=1)
def waiting_group():
    """A gloo group over every rank with :data:`WAIT_TIMEOUT` (made once; every rank makes it, in the same order)."""
    return dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)


def raise_if_any_failed(failure: BaseException | None) -> None:
    """Every rank says whether its step failed, and all raise if one did: a rank that went on alone would wait
    for the others in its next collective for ever. Every rank must call this."""
    messages = gather_from_ranks(f"{type(failure).__name__}: {failure}" if failure else None, group=waiting_group())
    if failure is not None:
        raise failure
    failed = [message for message in messages if message]
    if failed:
        raise LineageError(f"another rank failed: {failed[0]}")


def in_group() -> bool:
    return dist.is_initialized()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


