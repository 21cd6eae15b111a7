"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``torchrun --nproc_per_node N -m idfzip train ...`` starts N copies of the training command;
they find each other through the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``...), over gloo on CPUs or NCCL on GPUs. Every process draws
the same global batch of a step (it is a pure function of the seed and the step) and trains
on its own slice of it; DDP averages the gradients, so N processes follow the same path as one
process with the whole batch, checkpoints included, and ``--resume`` works across any
process count. Only rank 0 writes files, logs and evaluates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Replica:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This process's slice of a global batch (the batch size divides by ``world``)."""
        return batch.reshape(self.world, -1, *batch.shape[1:])[self.rank]


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str, batch_size: int) -> Replica:
    """Join the process group torchrun describes (no-op for a single process)."""
    if not launched_by_torchrun():
        return Replica(device=device)
    world = int(os.environ["WORLD_SIZE"])
    if batch_size % world:
        raise ValueError(f"--batch-size {batch_size} must divide by the {world} processes")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Replica(dist.get_rank(), world, device)


def wrap(model: torch.nn.Module, replica: Replica) -> torch.nn.Module:
    """The module to call for training steps: DDP around ``model`` when distributed."""
    if not replica.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [torch.device(replica.device).index] if replica.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def check_replicas(model: torch.nn.Module, replica: Replica) -> None:
    """Raise if any process's parameters differ from rank 0's (they must stay identical)."""
    if not replica.distributed:
        return
    from .weights import weights_sha256
    digest = weights_sha256(model.state_dict())
    digests = [None] * replica.world
    dist.all_gather_object(digests, digest)
    if len(set(digests)) != 1:
        raise RuntimeError("data-parallel replicas diverged: parameters differ between "
                           "processes")


def stop(replica: Replica) -> None:
    if replica.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
