"""Where training runs: the device, DDP under ``torchrun``, and Ray Train for several machines.

``torchrun --nproc-per-node N -m aifab.cli.main train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
each process then takes ``cuda:LOCAL_RANK`` (or the CPU with the gloo backend), draws its own batches
(its sampler is seeded by its rank) and gradients are averaged by DDP. Only rank 0 writes metrics,
checkpoints and the package; checkpoints hold every rank's sampler and RNG states.

``distributed = "ray"`` runs the same loop in ``workers`` Ray Train workers (``TorchTrainer``), which
set up the process group themselves. The run directory must then be on storage every worker's machine
sees (it is the local disk when Ray runs on one machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from aifab.errors import ConfigError, MissingDependency


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group (so we destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: torch.device) -> Dist:
    """Join the process group that torchrun or Ray Train describes; a single process otherwise."""
    if dist.is_available() and dist.is_initialized():  # Ray Train (or a caller) did it
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return Dist()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), owns_group=True)


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` is the GPU when there is one (each local rank its own), else the CPU."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {preference!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {preference} asked for, but this torch sees no CUDA GPU")
    return device


def local_rank_hint() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def run_with_ray(worker: Any, config: dict[str, Any], *, workers: int, address: str, storage: str) -> Any:
    """Run ``worker(config)`` in ``workers`` Ray Train workers with a torch process group between them;
    returns what Ray Train's ``fit`` returns. Ray is an optional extra."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise MissingDependency("ray[train]", "ray") from exc
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    trainer = TorchTrainer(
        worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=torch.cuda.is_available(),
                                     resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=storage, name="ray"),
    )
    return trainer.fit()
