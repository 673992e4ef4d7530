"""Data parallelism across processes (``torchrun``), SPML-style.

Every pixel of the global batch is compared with the prototypes of every
image of the global batch (``SPML.md`` section 3.6). Pixels never travel: each
rank gathers only the other ranks' per-segment embedding sums and pixel counts
(differentiable, so gradients flow back to the rank that owns the pixels) and
their segments' label sets and tags. Remote segments then join the relations
C and O the way memory-bank segments do (V stays within each image).
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def world() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` from torchrun's environment (``(0, 1, 0)`` without it)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init(device_type: str) -> bool:
    """Join the process group when launched by torchrun; True when distributed."""
    _, size, _ = world()
    if size <= 1:
        return False
    if not dist.is_initialized():
        # rank 0 runs the CAM stage alone while the others wait at a barrier (VOC: 5,000 classifier
        # steps and 10,582 images): the default timeouts (10 / 30 minutes) would end the run
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=datetime.timedelta(hours=12))
    return True


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _pad_gather(x: Tensor, rows: int, differentiable: bool) -> list[Tensor]:
    pad = torch.zeros((rows - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    full = torch.cat([x, pad])
    if differentiable:
        from torch.distributed.nn.functional import all_gather

        return list(all_gather(full))
    out = [torch.empty_like(full) for _ in range(dist.get_world_size())]
    dist.all_gather(out, full)
    return out


def gather_segments(sums: Tensor, counts: Tensor, label_set: Tensor, tags: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """The other ranks' segments: ``(prototypes (R, D), label_set (R, C), tags (R, C))``.

    ``sums (S, D)`` are this rank's per-segment embedding sums (differentiable), ``counts (S,)``
    their pixel counts. Prototypes are ``normalize(sum)`` of the gathered sums.
    """
    rank, size = dist.get_rank(), dist.get_world_size()
    n = torch.tensor([sums.shape[0]], device=sums.device)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    rows = int(max(int(s) for s in sizes))
    g_sums = _pad_gather(sums, rows, differentiable=True)
    g_meta = _pad_gather(torch.cat([counts[:, None].to(sums.dtype), label_set.to(sums.dtype),
                                    tags.to(sums.dtype)], 1).detach(), rows, differentiable=False)
    C = label_set.shape[1]
    protos, sets, tgs = [], [], []
    for r in range(size):
        if r == rank:
            continue
        k = int(sizes[r])
        protos.append(F.normalize(g_sums[r][:k], dim=1))
        sets.append(g_meta[r][:k, 1:1 + C] > 0.5)
        tgs.append(g_meta[r][:k, 1 + C:] > 0.5)
    return torch.cat(protos), torch.cat(sets), torch.cat(tgs)


def all_gather_detached(x: Tensor) -> Tensor:
    """Rows of ``x`` from every rank, concatenated in rank order (no gradient)."""
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    rows = int(max(int(s) for s in sizes))
    parts = _pad_gather(x.detach(), rows, differentiable=False)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])
