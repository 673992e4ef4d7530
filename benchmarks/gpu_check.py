"""GPU check at SPML's VOC shape, random weights and synthetic data (no downloads).

    python benchmarks/gpu_check.py [--batch 16] [--size 512] [--backbone resnet101] [--smoke]

Measures, on one GPU, side by side in one process (median step time, peak memory):

a. a plain cross-entropy training step of the network (ResNet-101 OS8 + ASPP,
   bf16 autocast, channels_last) at 16 x 512^2;
b. the SPML step with C + O + V (k-means, segment sets, chunked SegSort+) on the
   same batch, with the engine's memory bank (the last 2 steps' segments join C and O);
c. the SegSort+ loss alone at N = 262,144 pixels and P = 10,000 prototypes,
   chunked (ours) against the naive dense form (the full N x P exponential
   matrix, as the reference computes it), forward + backward; the relation has
   random per-pixel sets (up to 256 distinct rows: ours takes its masked path),
   and, for ours, again with SPML's structure (each pixel's set its image's
   tags, 16 images: the one-product path);
d. segment-set construction at 16 x 128 x 128 (``benchmarks/segsets.py``'s batch);
e. dense pseudo labels (``spml_train/pseudo``) at the same shape: the network on
   each image and its flip, the random walk at 1/8 resolution (64 x 64 pixels,
   T^64), the dense CRF at 512^2 (10 iterations): images/s for the whole
   per-image path and each part alone, and the random walk batched over 16 images.

Imports only torch and the project's own modules (the GPU machine has no Hydra,
datasets or pycocotools). ``--smoke`` runs tiny sizes on the CPU to check the
script itself. The last line printed is one JSON object with the figures.
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

from spml_train.loss import segsort_loss, spml_loss  # noqa: E402
from spml_train.model import build_model, freeze_stem, param_groups  # noqa: E402
from spml_train.segments import MemoryBank, spherical_kmeans, step_segments  # noqa: E402
from weaklabels.segsets import Relation, build_segment_sets  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev: torch.device, repeats: int) -> tuple[float, float | None]:
    """Median seconds of ``fn`` after one warm-up, and peak memory (GiB, CUDA only)."""
    fn()
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else None
    return statistics.median(times), peak


def push_memory(bank: MemoryBank, emb: torch.Tensor, sets) -> None:
    """What the engine does after each step: the batch's training segments join the memory bank
    (detached), so C and O of the next steps also compare with them (SPML.md 3.7: 2 iterations)."""
    bank.push(*step_segments(emb, sets))


def with_memory(bank: MemoryBank) -> tuple[dict, dict]:
    """``build_segment_sets`` and ``spml_loss`` keyword arguments for the bank's current memory."""
    if not len(bank):
        return {}, {}
    protos, memory = bank.get()
    return {"memory": memory}, {"memory_prototypes": protos}


def synthetic_batch(B: int, size: int, C: int, dev: torch.device):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(B, 3, size, size, generator=g)
    label = torch.full((B, size, size), 254, dtype=torch.long)
    for b in range(B):  # a labelled square and background strip per image, as scribbles would give
        c = int(torch.randint(1, C, (1,), generator=g))
        y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
        label[b, y0:y0 + size // 4, x0:x0 + size // 4] = c
        label[b, : size // 16] = 0
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    region = ((yy * 8 // size) * 8 + xx * 8 // size).expand(B, size, size).clone()
    tags = torch.zeros(B, C, dtype=torch.bool)
    tags[torch.arange(B), label.reshape(B, -1).clamp(max=C - 1).amax(1)] = True
    return images.to(dev), label.to(dev), region.to(dev), tags.to(dev)


def pseudo_labels(model, images, label, C: int, dev: torch.device, repeats: int) -> dict:
    """Pseudo-label throughput (section e); ``images`` (B, 3, H, W), ``label`` (B, H, W)."""
    from spml_train.pseudo.crf import dense_crf
    from spml_train.pseudo.labels import PseudoParams, pseudo_label
    from spml_train.pseudo.random_walk import random_walk, to_grid

    model.eval()
    B, _, H, W = images.shape
    g = torch.Generator().manual_seed(2)
    palette = torch.randint(0, 256, (256, 3), generator=g, dtype=torch.uint8)
    # a piecewise-constant picture with a little noise: the lattice size of a real photo, not of noise
    noise = torch.randint(-4, 5, (B, H, W, 3), generator=g)
    rgb = (palette[label.cpu().clamp(max=255)].int() + noise).clamp(0, 255).to(torch.uint8).to(dev)
    params = PseudoParams()
    present = [0, 1, 2, 3]
    imgs = images.contiguous()
    n = min(B, 4)

    def whole():
        for b in range(n):
            pseudo_label(model, imgs[b], rgb[b].cpu().numpy(), present, params, num_classes=C, background=0)

    t_whole, m_whole = timed(whole, dev, max(1, repeats // 2))
    with torch.no_grad():
        out = model(imgs[:n])
        grid = (H // 8, W // 8)
        emb = to_grid(out["embedding"].float(), grid)
        scores = F.interpolate(out["logits"].float().softmax(1), size=grid, mode="bilinear")
        emb_all = emb.repeat(B // n + 1, 1, 1, 1)[:B]
        scores_all = scores.repeat(B // n + 1, 1, 1, 1)[:B]
    t_rw1, _ = timed(lambda: random_walk(scores[:1], emb[:1], emb[:1]), dev, repeats)
    t_rwB, m_rwB = timed(lambda: random_walk(scores_all, emb_all, emb_all), dev, repeats)
    probs = F.interpolate(scores[:1], size=(H, W), mode="bilinear")[0]
    probs = probs / probs.sum(0, keepdim=True)
    t_crf, m_crf = timed(lambda: dense_crf(rgb[0], probs), dev, repeats)
    return {"pseudo_images_per_s": n / t_whole, "pseudo_peak_gib": m_whole,
            "random_walk_ms_per_image": 1e3 * t_rw1, "random_walk_batched_images_per_s": B / t_rwB,
            "random_walk_batched_peak_gib": m_rwB, "crf_ms_per_image": 1e3 * t_crf, "crf_peak_gib": m_crf}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--backbone", default="resnet101")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pixels", type=int, default=262144)
    ap.add_argument("--prototypes", type=int, default=10000)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: check the script runs")
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.size, args.backbone, args.repeats = 2, 64, "resnet_tiny", 1
        args.pixels, args.prototypes = 4096, 500
    dev = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False  # as the engine: the loss's products in full fp32
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    C, B = 21, args.batch
    from spml_train import loss_triton

    r: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "batch": B,
               "size": args.size, "backbone": args.backbone,
               "fused_loss": loss_triton.available(torch.empty(0, device=dev))}

    model = build_model(args.backbone, "aspp", 64, C, weights="none")
    freeze_stem(model)
    model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(param_groups(model, 3e-3), lr=3e-3, momentum=0.9)
    images, label, region, tags = synthetic_batch(B, args.size, C, dev)
    images = images.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return model(images)

    def grid_labels(out):
        h, w = out["embedding"].shape[-2:]
        lab = F.interpolate(label[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        reg = F.interpolate(region[:, None].float(), size=(h, w), mode="nearest")[:, 0].long()
        return lab, reg

    def ce_step():
        # the plain baseline: cross-entropy on the same network's head, full labels
        out = forward()
        lab, _ = grid_labels(out)
        target = torch.where(lab < C, lab, torch.full_like(lab, -100))
        loss = F.cross_entropy(out["logits"].float(), target, ignore_index=-100)
        # the embedding must get a gradient too, as in a segmentation network trained end to end
        loss = loss + out["embedding"].float().mean() * 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bank = MemoryBank(2)  # as the engine (segments.memory_iterations: 2): C and O see 3 steps' segments

    def spml_step():
        out = forward()
        emb = out["embedding"].float()
        lab, reg = grid_labels(out)
        cluster = spherical_kmeans(emb.detach(), lab != 255, grid=6, iters=10)
        mem_sets, mem_loss = with_memory(bank)
        sets = build_segment_sets(cluster, lab, reg, tags, num_classes=C, unlabelled=254, ignore=255, **mem_sets)
        total, _ = spml_loss(emb, sets, {"C": 1.0, "O": 0.5, "V": 0.1}, {"C": 6, "O": 12, "V": 16}, **mem_loss)
        target = torch.where(lab < C, lab, torch.full_like(lab, -100))
        total = total + F.cross_entropy(out["logits"].float(), target, ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        push_memory(bank, emb, sets)
        r["spml_segments"] = len(sets)

    try:
        r.update(pseudo_labels(model, images, label, C, dev, args.repeats))
    except Exception as err:  # keep the other figures when this part fails
        r["pseudo_error"] = f"{type(err).__name__}: {err}"[:300]
    model.train()

    t_ce, m_ce = timed(ce_step, dev, args.repeats)
    spml_step()  # with timed()'s own warm-up, the memory bank is full before the first timed step
    t_spml, m_spml = timed(spml_step, dev, args.repeats)
    r.update({"ce_step_ms": 1e3 * t_ce, "ce_peak_gib": m_ce, "spml_step_ms": 1e3 * t_spml,
              "spml_peak_gib": m_spml, "spml_vs_ce_x": t_spml / t_ce})
    del model, opt
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # c. the loss alone: N pixels x P prototypes, one relation by tag-set intersection (O-like)
    N, P, D = args.pixels, args.prototypes, 64
    g = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(N, D, generator=g), dim=1).to(dev).requires_grad_()
    p = F.normalize(torch.randn(P, D, generator=g), dim=1).to(dev).requires_grad_()
    pix_set = (torch.rand(N, 8, generator=g) > 0.7).to(dev)
    seg_set = (torch.rand(P, 8, generator=g) > 0.7).to(dev)
    own = torch.randint(0, P, (N,), generator=g).to(dev)
    rel = Relation("O", torch.arange(N, device=dev), own, torch.arange(P, device=dev),
                   pixel_set=pix_set, segment_set=seg_set)

    def ours():
        loss = segsort_loss(x, p, rel, 12.0)  # the default chunking (about 2 GiB of working blocks)
        loss.backward()

    def naive():
        # the reference's dense form: the whole N x P exponential matrix and its masks live at once
        sim = torch.exp(12.0 * (x @ p.T))
        related = (pix_set.float() @ seg_set.float().T) > 0
        is_own = own[:, None] == torch.arange(P, device=dev)[None]
        pos = related & ~is_own
        neg = ~related & ~is_own
        has = pos.any(1)
        num = torch.where(has, (sim * pos).sum(1), sim.gather(1, own[:, None])[:, 0])
        den = num + (sim * neg).sum(1)
        loss = -(num / den).log().mean()
        loss.backward()

    t_ours, m_ours = timed(ours, dev, args.repeats)
    r.update({"loss_N": N, "loss_P": P, "loss_chunked_ms": 1e3 * t_ours, "loss_chunked_peak_gib": m_ours})
    # the same sizes with SPML's structure: a pixel's set is its image's tags (16 images), so the
    # relation has at most 16 distinct rows and the loss sums them with one matrix product
    img = torch.arange(N, device=dev) * 16 // N
    seg_img = torch.arange(P, device=dev) * 16 // P
    image_tags = (torch.rand(16, 8, generator=g) > 0.7).to(dev)
    rel_o = Relation("O", torch.arange(N, device=dev), own, torch.arange(P, device=dev),
                     pixel_set=image_tags[img], segment_set=image_tags[seg_img])

    def ours_o():
        segsort_loss(x, p, rel_o, 12.0).backward()

    t_o, m_o = timed(ours_o, dev, args.repeats)
    r.update({"loss_image_tags_ms": 1e3 * t_o, "loss_image_tags_peak_gib": m_o})
    try:
        t_naive, m_naive = timed(naive, dev, args.repeats)
        r.update({"loss_naive_ms": 1e3 * t_naive, "loss_naive_peak_gib": m_naive,
                  "loss_chunked_vs_naive_time_x": t_ours / t_naive,
                  "loss_image_tags_vs_naive_time_x": t_o / t_naive})
    except torch.OutOfMemoryError as err:
        r.update({"loss_naive_ms": None, "loss_naive_error": str(err).splitlines()[0]})
    del x, p
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    # d. segment sets at the reference batch shape
    import segsets as bench_segsets

    data = bench_segsets.batch(dev.type)
    t_sets, _ = timed(lambda: bench_segsets.run(dev.type, data), dev, max(args.repeats, 5))
    r["segsets_ms"] = 1e3 * t_sets

    print(f"device: {r['device']}")
    for k, v in r.items():
        if isinstance(v, float):
            print(f"  {k:<30} {v:10.2f}")
    print("targets: SPML step <= 1.3x CE step; loss peak <= 5 GiB and no slower than naive; segsets <= 5 ms")
    if r["fused_loss"]:
        r["fused_precision"] = loss_triton._precision()
        r["fused_tiles"] = loss_triton.chosen_tiles()
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
