"""Where the SPML step's time goes on a GPU, phase by phase (the same batch as gpu_check.py).

    python benchmarks/gpu_profile.py [--batch 16] [--size 512] [--smoke]

Times each phase of the step with CUDA events (median of ``--repeats``): network
forward, k-means, segment sets, prototypes + SegSort+ forward per relation, the
backward, the optimiser step; then prints torch.profiler's top operators by
device time. Random weights, synthetic data, no downloads; imports only torch
and the project. The last line printed is one JSON object with the phase times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import push_memory, synthetic_batch, with_memory  # noqa: E402
from spml_train.loss import spml_loss  # noqa: E402
from spml_train.model import build_model, freeze_stem, param_groups  # noqa: E402
from spml_train.segments import MemoryBank, spherical_kmeans  # noqa: E402
from weaklabels.segsets import build_segment_sets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: check the script runs")
    args = ap.parse_args()
    backbone = "resnet101"
    if args.smoke:
        args.batch, args.size, args.repeats, backbone = 2, 64, 2, "resnet_tiny"
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # as the engine: the loss's products in full fp32
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    C = 21
    model = build_model(backbone, "aspp", 64, C, weights="none")
    freeze_stem(model)
    model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(param_groups(model, 3e-3), lr=3e-3, momentum=0.9)
    images, label, region, tags = synthetic_batch(args.batch, args.size, C, dev)
    images = images.contiguous(memory_format=torch.channels_last)

    def mark():
        if dev.type == "cuda":
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        import time
        return time.perf_counter()

    def elapsed(a, b) -> float:
        if dev.type == "cuda":
            return a.elapsed_time(b)
        return (b - a) * 1e3

    bank = MemoryBank(2)  # as the engine: C and O also see the last 2 steps' segments

    def step() -> dict[str, float]:
        t = [mark()]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model(images)
        emb = out["embedding"].float()
        h, w = emb.shape[-2:]
        lab = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        reg = F.interpolate(region[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        t.append(mark())
        cluster = spherical_kmeans(emb.detach(), lab != 255, grid=6, iters=10)
        t.append(mark())
        mem_sets, mem_loss = with_memory(bank)
        sets = build_segment_sets(cluster, lab, reg, tags, num_classes=C, unlabelled=254, ignore=255, **mem_sets)
        t.append(mark())
        terms = {}
        total = emb.sum() * 0
        for name, lam, kappa in (("C", 1.0, 6), ("O", 0.5, 12), ("V", 0.1, 16)):
            term, _ = spml_loss(emb, sets, {name: lam}, {name: kappa}, **mem_loss)
            total = total + term
            terms[name] = mark()
        target = torch.where(lab < C, lab, torch.full_like(lab, -100))
        total = total + F.cross_entropy(out["logits"].float(), target, ignore_index=-100)
        t_loss = mark()
        opt.zero_grad(set_to_none=True)
        total.backward()
        t_back = mark()
        opt.step()
        t_opt = mark()
        push_memory(bank, emb, sets)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        r = {"forward_ms": elapsed(t[0], t[1]), "kmeans_ms": elapsed(t[1], t[2]), "segsets_ms": elapsed(t[2], t[3])}
        prev = t[3]
        for name, e in terms.items():
            r[f"loss_{name}_forward_ms"] = elapsed(prev, e)
            prev = e
        r["ce_ms"] = elapsed(prev, t_loss)
        r["backward_ms"] = elapsed(t_loss, t_back)
        r["optimizer_ms"] = elapsed(t_back, t_opt)
        r["total_ms"] = elapsed(t[0], t_opt)
        return r

    step(), step()  # warm-up; the memory bank full
    runs = [step() for _ in range(args.repeats)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for k, v in med.items():
        print(f"  {k:<24} {v:9.2f}")
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60))
    print(json.dumps({"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                      **{k: round(v, 2) for k, v in med.items()}}))


if __name__ == "__main__":
    main()
