"""Segment-set construction at the reference batch shape.

    python benchmarks/segsets.py [--device cpu|cuda] [--repeats N]

A batch like SPML's: 16 images of 128 x 128 (the stride-4 grid of 512 crops),
a 6 x 6 k-means grid cut by a region map into about 100 segments per image,
weak labels with classes, unlabelled and ignore pixels and box candidate sets,
and a memory bank of 2 iterations of segments. Times ``build_segment_sets``
plus relation A (``add_affinity``), median of ``--repeats`` runs after a
warm-up, and reports the peak memory on CUDA.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from weaklabels.segsets import Memory, add_affinity, build_segment_sets

B, H, W, C = 16, 128, 128, 21


def batch(device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    cluster = ((yy * 6 // H) * 6 + (xx * 6 // W)).expand(B, H, W).clone()
    # irregular regions: a jittered 3 x 3 grid per image
    off = torch.randint(-12, 12, (B, 2), generator=g)
    region = (((yy[None] + off[:, :1, None]).clamp(0, H - 1) * 3 // H) * 3
              + ((xx[None] + off[:, 1:, None]).clamp(0, W - 1) * 3 // W))
    label = torch.full((B, H, W), 254)
    for b in range(B):
        c = int(torch.randint(1, C, (1,), generator=g))
        y0, x0 = (int(v) for v in torch.randint(0, 80, (2,), generator=g))
        label[b, y0:y0 + 40, x0:x0 + 40] = c
        label[b, :8] = 0
    label[:, :, -4:] = 255  # padding
    tags = torch.zeros(B, C, dtype=torch.bool)
    tags[torch.arange(B), label.reshape(B, -1).clamp(max=C - 1).amax(1)] = True
    cand = torch.zeros(B, C, H, W, dtype=torch.bool)
    cand[:, 0, 90:120, 10:50] = True
    cand[:, 7, 90:120, 10:50] = True
    m = 2 * B * 100
    memory = Memory(torch.nn.functional.one_hot(torch.randint(0, C, (m,), generator=g), C).bool(),
                    torch.rand(m, C, generator=g) > 0.9)
    to = dict(device=device)
    return (cluster.to(**to), label.to(**to), region.to(**to), tags.to(**to), cand.to(**to),
            Memory(memory.label_set.to(**to), memory.tags.to(**to)))


def run(device: str, data) -> tuple[float, int, int]:
    cluster, label, region, tags, cand, memory = data
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    sets = build_segment_sets(cluster, label, region, tags, num_classes=C, unlabelled=254, ignore=255,
                              candidates=cand, memory=memory)
    feats = torch.nn.functional.normalize(torch.randn(sets.num_batch_segments, 66, device=device), dim=1)
    add_affinity(sets, feats)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, sets.num_batch_segments, len(sets)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    data = batch(args.device)
    r = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name()}
    # On a shared 2-core machine intra-op threads can fight other processes for the cores:
    # measure one thread and torch's default side by side, interleaved.
    default_threads = torch.get_num_threads()
    settings = [1, default_threads] if args.device == "cpu" and default_threads > 1 else [default_threads]
    times = {n: [] for n in settings}
    for n in settings:
        torch.set_num_threads(n)
        run(args.device, data)  # warm-up
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.repeats):
        for n in settings:
            torch.set_num_threads(n)
            t, segs, total = run(args.device, data)
            times[n].append(t)
    r.update({"batch_segments": segs, "segments_with_memory": total, "segments_per_image": segs / B})
    for n in settings:
        r[f"build_ms_{n}_threads"] = round(1e3 * statistics.median(times[n]), 2)
    if args.device == "cuda":
        r["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    target = 200 if args.device == "cpu" else 5
    for n in settings:
        print(f"segment sets at 16 x 128 x 128 on {r['device']}, {n} thread(s): "
              f"{r[f'build_ms_{n}_threads']:.1f} ms ({segs / B:.0f} segments per image, {total} with memory); "
              f"target <= {target} ms")
    print(json.dumps(r))


if __name__ == "__main__":
    main()
