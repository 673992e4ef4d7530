"""Where SegSort+'s time goes, term by term, at the GPU check's batch (no network).

    python benchmarks/loss_terms.py [--device cpu|cuda] [--threads N] [--repeats R] [--size 512]

The same synthetic batch as ``gpu_check.py`` (16 images, labels with a labelled square and a
background strip, 8 x 8 grid regions, one tag per image), a random unit embedding at stride 4
(16 x 64 x 128 x 128), k-means and segment sets as in the SPML step; then each relation's term
alone, forward and backward, median of ``--repeats``. Prints each relation's pixel and candidate
counts (O compares every pixel with every segment of the batch) and, as its last line, one JSON
object. Imports only torch and the project.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import push_memory, synthetic_batch, with_memory  # noqa: E402
from spml_train.loss import spml_loss  # noqa: E402
from spml_train.segments import MemoryBank, spherical_kmeans  # noqa: E402
from weaklabels.segsets import build_segment_sets  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=512, help="image side; the embedding is size / 4")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--memory", type=int, default=2,
                    help="memory-bank steps whose segments join C and O, as the engine (0: the batch alone)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # as the engine
    C, B, s = 21, args.batch, args.size // 4
    _, label, region, tags = synthetic_batch(B, args.size, C, dev)
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(B, 64, s, s, generator=g), dim=1).to(dev).requires_grad_()
    lab = F.interpolate(label[:, None].float(), size=(s, s), mode="nearest")[:, 0].long()
    reg = F.interpolate(region[:, None].float(), size=(s, s), mode="nearest")[:, 0].long()

    def timed(fn) -> float:
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        return time.perf_counter() - t

    cluster = spherical_kmeans(emb.detach(), lab != 255, grid=6, iters=10)
    kmeans = statistics.median(timed(lambda: spherical_kmeans(emb.detach(), lab != 255, grid=6, iters=10))
                               for _ in range(args.repeats))
    table = dict(num_classes=C, unlabelled=254, ignore=255)
    sets = build_segment_sets(cluster, lab, reg, tags, **table)
    bank = MemoryBank(args.memory)
    for _ in range(args.memory):  # the bank as after `memory` steps (here: this batch's segments again)
        push_memory(bank, emb, sets)
    mem_sets, mem_loss = with_memory(bank)
    sets = build_segment_sets(cluster, lab, reg, tags, **table, **mem_sets)
    r: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "pixels": B * s * s, "segments": len(sets),
               "batch_segments": sets.num_batch_segments, "memory_steps": args.memory,
               "kmeans_ms": 1e3 * kmeans}
    for name, lam, kappa in (("C", 1.0, 6), ("O", 0.5, 12), ("V", 0.1, 16)):
        rel = sets.relations[name]
        fwd, bwd = [], []
        for _ in range(args.repeats):
            emb.grad = None
            out = {}
            fwd.append(timed(lambda: out.update(t=spml_loss(emb, sets, {name: lam}, {name: kappa}, **mem_loss)[0])))
            bwd.append(timed(lambda: out["t"].backward()))
        r[f"{name}_pixels"], r[f"{name}_candidates"] = len(rel), len(rel.segments)
        r[f"{name}_forward_ms"] = 1e3 * statistics.median(fwd)
        r[f"{name}_backward_ms"] = 1e3 * statistics.median(bwd)
        print(f"{name}: {len(rel):,} pixels x {len(rel.segments):,} candidates: forward "
              f"{r[f'{name}_forward_ms']:.1f} ms, backward {r[f'{name}_backward_ms']:.1f} ms", flush=True)
    from spml_train import loss_triton
    if loss_triton.available(emb):
        r["fused_precision"] = loss_triton._precision()
        r["fused_tiles"] = loss_triton.chosen_tiles()
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
