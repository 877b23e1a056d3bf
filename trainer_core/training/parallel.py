"""Training on several processes (torchrun) without changing what is trained.

A step's global batch is ``gradient_accumulation`` micro-batches of ``batch_size`` samples, in the same order and
with the same random draws on any number of processes: micro-batch ``k`` of step ``s`` always gets the same samples
and draws its noise from a generator seeded by ``(seed, s, k)``. With ``W`` processes, process ``r`` computes the
micro-batches ``k`` with ``k % W == r``; the LoRA gradients (small: the base model is frozen) are then summed over
processes once per step, so every process applies the identical optimizer step. This is data parallelism in the
DistributedDataParallel sense (replicated trainable weights, one gradient all-reduce per step) without wrapping the
frozen base in DDP, which would register hooks on billions of parameters that never get a gradient.

With FSDP2 (``shard_frozen_blocks``) each process also keeps only its shard of every transformer block's frozen
weights and gathers a block's full weights just for its forward (and its recompute). Every process must then run
the same number of forwards per step, which ``gradient_accumulation % W == 0`` guarantees.

Only process 0 writes checkpoints, logs and LoRA files; a checkpoint resumes on any process count, since nothing in
it depends on the process count.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn


class ParallelError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Parallel:
    rank: int = 0
    world_size: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def check(self, gradient_accumulation: int) -> None:
        if gradient_accumulation % self.world_size:
            raise ParallelError(
                f"gradient_accumulation {gradient_accumulation} does not divide among {self.world_size} processes: "
                f"set it to a multiple of {self.world_size} (each process computes gradient_accumulation / "
                f"{self.world_size} micro-batches per step; the global batch stays batch_size x "
                "gradient_accumulation)")

    def owns(self, micro_batch: int) -> bool:
        return micro_batch % self.world_size == self.rank

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Sums the gradients over processes in one flat all-reduce; a process that computed none adds zeros."""
        if not self.distributed:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p))
            offset += n

    def sum(self, value: float, device: torch.device) -> float:
        if not self.distributed:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item())

    def any(self, flag: bool, device: torch.device) -> bool:
        return self.sum(1.0 if flag else 0.0, device) > 0

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def from_environment() -> Parallel:
    """The process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``); one process otherwise.
    NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Parallel()
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Parallel(rank=dist.get_rank(), world_size=dist.get_world_size())


def shard_frozen_blocks(module: nn.Module, device: torch.device) -> nn.Module:
    """FSDP2 over one frozen block (``module`` wraps it): its weights are split across the processes and gathered
    for each forward and backward. LoRA adapters live outside (forward hooks on its linears) and stay replicated."""
    from torch.distributed.fsdp import fully_shard

    for p in module.parameters():
        p.requires_grad_(False)
    mesh = None
    if device.type == "cuda":
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cuda", (int(os.environ["WORLD_SIZE"]),))
    return fully_shard(module, mesh=mesh, reshard_after_forward=True)
