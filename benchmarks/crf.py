"""Dense CRF: ``spml_train.pseudo.crf.dense_crf`` against the C++ reference (pydensecrf2) on real images.

    python benchmarks/crf.py [--data PATH] [--coco N] [--device cpu|cuda] [--stride S] [--noise A] [--seed N]

Images: the 3 labelme VOC JPEGs (``labelme-voc-examples/.../data_dataset_voc``, masks from
``SegmentationClass``, 255 = void) and ``--coco`` of the coco-tiny images (default 6, alternating
val2017 / train2017 in id order; semantic masks painted with pycocotools, non-crowd objects largest
first so that smaller ones stay on top, crowd regions void where no object covers them).

Unaries, deterministic per image (seed ``--seed`` + image index), shaped like pseudo-label scores:
the ground truth restricted to the classes present (+ background), one-hot (void pixels all zero),
area-pooled to 1/``--stride`` resolution, mixed ``(1 - noise) * onehot + noise * U[0, 1)``,
upsampled bilinearly and normalised over classes. Both CRFs get the same probabilities and the
SPML / DeepLab settings (``CRFParams``: 10 iterations, Gaussian 3 / xy 1, bilateral 4 / xy 67 /
rgb 3); the reference is ``DenseCRF2D`` with ``unary_from_softmax`` (the same ``-log max(p, 1e-5)``).

Measured:

(a) agreement: the share of pixels where the argmax of ours equals the reference's, per image and
    over all pixels; max and mean ``|Q_ours - Q_ref|`` over all marginals;
(b) seconds per image (the whole call: lattices + 10 iterations; for the reference also its
    ``DenseCRF2D`` set-up), median over the images, after one untimed warm-up call. On the CPU ours
    runs with 1 torch thread and with torch's default, interleaved image by image with the
    reference (single-threaded C++); ``--device cuda`` times ours on the GPU instead (synchronised);
    ratios are ours / reference seconds (> 1: ours slower);
(c) pixel accuracy against the ground truth (non-void pixels): argmax of the probabilities before
    the CRF, after ours, after the reference.

pydensecrf2 is optional (``pip install pydensecrf2``, an sdist that needs a C++ compiler): without it
the reference figures are null and the JSON says why. With the defaults (9 images) it runs in about
1 minute on 2 idle CPU cores, 2.5 minutes on 2 busy ones (torch's 2 threads then run ~4x slower than
one: they spin against the other processes).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from spml_train.pseudo.crf import CRFParams, dense_crf

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
VOC = Path("labelme-voc-examples", "examples", "semantic_segmentation", "data_dataset_voc")
VOID = 255

try:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
except ImportError as e:  # optional: a C++ build
    dcrf = None
    REF_MISSING = f"pydensecrf not importable ({e}); reference figures are null"
else:
    REF_MISSING = None


# --------------------------------------------------------------------------- data


def voc_images(data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    root = data / VOC
    out = []
    for jpg in sorted((root / "JPEGImages").glob("*.jpg")):
        rgb = np.array(Image.open(jpg).convert("RGB"))
        gt = np.array(Image.open(root / "SegmentationClass" / f"{jpg.stem}.png")).astype(np.int64)
        out.append((f"voc/{jpg.stem}", rgb, gt))
    return out


def coco_images(data: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from pycocotools.coco import COCO

    root = data / "coco-tiny"
    splits = []
    for split in ("val2017", "train2017"):
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
        splits.append((split, coco, sorted(coco.getImgIds())))
    picked = [(s, c, ids[i]) for i in range(max(len(ids) for _, _, ids in splits))
              for s, c, ids in splits if i < len(ids)][:limit]
    out = []
    for split, coco, iid in picked:
        info = coco.loadImgs(iid)[0]
        rgb = np.array(Image.open(root / split / info["file_name"]).convert("RGB"))
        gt = np.zeros((info["height"], info["width"]), np.int64)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=iid))
        for a in anns:
            if a["iscrowd"]:
                gt[coco.annToMask(a) > 0] = VOID
        for a in sorted((a for a in anns if not a["iscrowd"]), key=lambda a: -a["area"]):
            gt[coco.annToMask(a) > 0] = a["category_id"]
        out.append((f"coco/{split}/{iid}", rgb, gt))
    return out


def degraded_probs(gt: np.ndarray, stride: int, noise: float, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """(K, H, W) probabilities over background + the classes present, and the GT as indices into
    them (-1 = void)."""
    classes = np.union1d([0], np.unique(gt[gt != VOID]))
    label = np.where(gt == VOID, -1, np.searchsorted(classes, gt))
    H, W = gt.shape
    lab = torch.from_numpy(label)
    onehot = F.one_hot(lab.clamp(min=0), len(classes)).permute(2, 0, 1).float() * (lab >= 0)
    small = F.adaptive_avg_pool2d(onehot[None], (-(-H // stride), -(-W // stride)))
    g = torch.Generator().manual_seed(seed)
    small = (1 - noise) * small + noise * torch.rand(small.shape, generator=g)
    p = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0]
    return p / p.sum(0, keepdim=True), label


# --------------------------------------------------------------------------- the two CRFs


def ours(rgb: np.ndarray, probs: torch.Tensor, device: str) -> tuple[np.ndarray, float]:
    rgb_t, probs_t = torch.from_numpy(rgb).to(device), probs.to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    q = dense_crf(rgb_t, probs_t, CRFParams())
    if device == "cuda":
        torch.cuda.synchronize()
    return q.cpu().numpy(), time.perf_counter() - t0


def reference(rgb: np.ndarray, probs: torch.Tensor) -> tuple[np.ndarray, float]:
    p = CRFParams()
    K, H, W = probs.shape
    probs_np, rgb_c = probs.numpy(), np.ascontiguousarray(rgb)
    t0 = time.perf_counter()
    d = dcrf.DenseCRF2D(W, H, K)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs_np)))
    d.addPairwiseGaussian(sxy=p.gaussian_xy, compat=p.gaussian_weight)
    d.addPairwiseBilateral(sxy=p.bilateral_xy, srgb=p.bilateral_rgb, rgbim=rgb_c, compat=p.bilateral_weight)
    q = np.array(d.inference(p.iterations), dtype=np.float32).reshape(K, H, W)
    return q, time.perf_counter() - t0


# --------------------------------------------------------------------------- main


def accuracy(pred: np.ndarray, label: np.ndarray) -> tuple[int, int]:
    valid = label >= 0
    return int((pred[valid] == label[valid]).sum()), int(valid.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder (default {DEFAULT_DATA})")
    ap.add_argument("--coco", type=int, default=6, help="coco-tiny images to add to the 3 VOC ones (default 6)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where ours runs (the reference: CPU)")
    ap.add_argument("--stride", type=int, default=8, help="resolution of the degraded scores, 1/stride (default 8)")
    ap.add_argument("--noise", type=float, default=0.4, help="weight of the uniform noise in the scores (default 0.4)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for folder in [args.data / VOC] + ([args.data / "coco-tiny"] if args.coco else []):
        if not folder.is_dir():
            sys.exit(f"error: {folder} is missing (pass --data PATH to the shared data folder)")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no GPU")
    if REF_MISSING:
        print(f"note: {REF_MISSING}")

    images = voc_images(args.data) + coco_images(args.data, args.coco)
    default_threads = torch.get_num_threads()
    if args.device == "cuda":
        settings = ["cuda"]
    else:
        settings = [1] + ([default_threads] if default_threads > 1 else [])

    def key(setting) -> str:
        return "cuda" if setting == "cuda" else f"{setting}_threads"

    def run_ours(setting, rgb, probs):
        if setting == "cuda":
            return ours(rgb, probs, "cuda")
        torch.set_num_threads(setting)
        return ours(rgb, probs, "cpu")

    # untimed warm-up (allocator, lazy initialisation, CUDA context)
    rgb0, gt0 = images[0][1], images[0][2]
    probs0, _ = degraded_probs(gt0, args.stride, args.noise, args.seed)
    for s in settings:
        run_ours(s, rgb0, probs0)
    if dcrf is not None:
        reference(rgb0, probs0)

    times = {s: [] for s in settings}
    ref_times, rows = [], []
    totals = {"agree": 0, "pixels": 0, "before": 0, "ours": 0, "ref": 0, "valid": 0, "abs_sum": 0.0, "values": 0}
    max_abs, threads_max_abs = 0.0, 0.0
    for i, (name, rgb, gt) in enumerate(images):
        probs, label = degraded_probs(gt, args.stride, args.noise, args.seed + i)
        K, H, W = probs.shape
        outs = {}
        for s in settings:
            outs[s], t = run_ours(s, rgb, probs)
            times[s].append(t)
        q = outs[settings[-1]]  # torch's default threads (or the GPU)
        if len(settings) > 1:
            threads_max_abs = max(threads_max_abs, float(np.abs(outs[settings[0]] - q).max()))
        pred = q.argmax(0)
        row = {"image": name, "height": H, "width": W, "classes": K}
        ok_before, valid = accuracy(probs.numpy().argmax(0), label)
        ok_ours, _ = accuracy(pred, label)
        row.update(acc_before=ok_before / valid, acc_ours=ok_ours / valid)
        row.update({f"ours_s_{key(s)}": times[s][-1] for s in settings})
        totals["before"] += ok_before
        totals["ours"] += ok_ours
        totals["valid"] += valid
        totals["pixels"] += H * W
        if dcrf is not None:
            qr, t = reference(rgb, probs)
            ref_times.append(t)
            pred_r = qr.argmax(0)
            agree = int((pred == pred_r).sum())
            diff = np.abs(q - qr)
            ok_ref, _ = accuracy(pred_r, label)
            row.update(agreement=agree / (H * W), max_abs_dq=float(diff.max()), acc_ref=ok_ref / valid, ref_s=t)
            totals["agree"] += agree
            totals["ref"] += ok_ref
            totals["abs_sum"] += float(diff.sum(dtype=np.float64))
            totals["values"] += diff.size
            max_abs = max(max_abs, float(diff.max()))
        rows.append(row)

    torch.set_num_threads(default_threads)
    has_ref = dcrf is not None
    r = {
        "device": "cpu" if args.device == "cpu" else torch.cuda.get_device_name(),
        "reference": "pydensecrf2 (C++ DenseCRF2D)" if has_ref else None,
        "reference_note": REF_MISSING,
        "images": len(images),
        "voc_images": sum(n.startswith("voc/") for n, _, _ in images),
        "coco_images": sum(n.startswith("coco/") for n, _, _ in images),
        "megapixels": round(totals["pixels"] / 1e6, 3),
        "stride": args.stride,
        "noise": args.noise,
        "seed": args.seed,
        "agreement_overall_frac": round(totals["agree"] / totals["pixels"], 6) if has_ref else None,
        "agreement_min_image_frac": round(min(x["agreement"] for x in rows), 6) if has_ref else None,
        "max_abs_dq": round(max_abs, 6) if has_ref else None,
        "mean_abs_dq": float(f"{totals['abs_sum'] / totals['values']:.3g}") if has_ref else None,
        "pixel_acc_before_frac": round(totals["before"] / totals["valid"], 6),
        "pixel_acc_ours_frac": round(totals["ours"] / totals["valid"], 6),
        "pixel_acc_ref_frac": round(totals["ref"] / totals["valid"], 6) if has_ref else None,
    }
    ref_med = statistics.median(ref_times) if has_ref else None
    for s in settings:
        med = statistics.median(times[s])
        r[f"ours_s_per_image_median_{key(s)}"] = round(med, 4)
        r[f"ours_over_ref_time_x_{key(s)}"] = round(med / ref_med, 2) if has_ref else None
    r["ref_s_per_image_median"] = round(ref_med, 4) if has_ref else None
    if len(settings) > 1:
        r["threads_max_abs_dq"] = float(f"{threads_max_abs:.3g}")
    r["per_image"] = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in x.items()} for x in rows]

    heads = "".join(f" {'ours s ' + ('gpu' if s == 'cuda' else f'{s}t'):>10}" for s in settings)
    print(f"{'image':<24} {'size':>9} {'K':>2} {'agree':>9} {'max|dQ|':>8} "
          f"{'acc before':>10} {'acc ours':>9} {'acc ref':>9}{heads} {'ref s':>6}")
    def cell(x: dict, name: str, width: int, spec: str) -> str:
        return f"{x[name]:>{width}{spec}}" if name in x else f"{'-':>{width}}"

    for x in rows:
        secs = "".join(f" {x[f'ours_s_{key(s)}']:>10.2f}" for s in settings)
        print(f"{x['image']:<24} {x['height']:>4}x{x['width']:<4} {x['classes']:>2} "
              f"{cell(x, 'agreement', 9, '.4%')} {cell(x, 'max_abs_dq', 8, '.1e')} "
              f"{x['acc_before']:>10.4%} {x['acc_ours']:>9.4%} {cell(x, 'acc_ref', 9, '.4%')}"
              f"{secs} {cell(x, 'ref_s', 6, '.2f')}")
    for s in settings:
        ratio = r[f"ours_over_ref_time_x_{key(s)}"]
        print(f"ours ({key(s).replace('_', ' ')}): {r[f'ours_s_per_image_median_{key(s)}']:.3f} s/image median"
              + (f", {ratio:.2f}x the reference's {ref_med:.3f} s" if has_ref else ""))
    print(json.dumps(r))


if __name__ == "__main__":
    main()
