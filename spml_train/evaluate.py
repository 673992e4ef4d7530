"""Evaluation: mIoU from one confusion matrix over the whole split (SPML.md
section 7): classes include background, ground truth ``ignore`` (255) is left
out, and IoU is computed once from the summed matrix (not a mean of per-image
scores). Inference uses the softmax head, optionally over several scales and
with a horizontal flip (probabilities averaged at image size).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from spml_train.progress import Progress
from weaklabels.types import Vocabulary
from weaklabels.writers.png import encode_label_png

log = logging.getLogger(__name__)


def confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore: int = 255) -> np.ndarray:
    """``(C, C) int64`` counts of (ground truth row, prediction column), ignore left out."""
    keep = (gt != ignore) & (gt < num_classes)
    return np.bincount(gt[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU ``(C,)`` in 0..1 (NaN for a class absent from both ground truth and predictions)."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def _items(loader, max_images: int = 0):
    """``(image, gt, rgb, image_id)`` of every evaluation item, at most ``max_images`` (0: all)."""
    n = 0
    for batch in loader:
        for item in zip(batch["image"], batch["gt"], batch["rgb"], batch["image_id"]):
            yield item
            n += 1
            if max_images and n >= max_images:
                return


def scores(conf: np.ndarray, names) -> dict:
    """``mIoU`` (0..100) and ``per_class_iou`` of a confusion matrix."""
    per_class = iou(conf)
    return {"mIoU": float(np.nanmean(per_class) * 100) if np.isfinite(per_class).any() else 0.0,
            "per_class_iou": {nm: (None if np.isnan(v) else float(v * 100)) for nm, v in zip(names, per_class)}}


@torch.no_grad()
def predict(model, image: torch.Tensor, scales: list[float], flip: bool,
            flip_perm: torch.Tensor | None = None) -> torch.Tensor:
    """Class probabilities ``(C, H, W)`` for one normalised image ``(3, H, W)``: the mean over scales
    (and flips) of each view's softmax; a flipped view's classes are mapped back through
    ``flip_perm`` (left / right parts, DensePose)."""
    _, H, W = image.shape
    probs = None
    for s in scales:
        x = image[None]
        if s != 1.0:
            x = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        views = [x, x.flip(-1)] if flip else [x]
        for k, v in enumerate(views):
            logits = model(v)["logits"].float()
            if k == 1:
                logits = logits.flip(-1)
                if flip_perm is not None:
                    logits = logits[:, flip_perm]
            p = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).softmax(1)[0]
            probs = p if probs is None else probs + p
    return probs / (len(scales) * (2 if flip else 1))


def evaluate(model, loader, vocabulary: Vocabulary, out_dir: Path, *, device: torch.device,
             scales: list[float] = (1.0,), flip: bool = False, save_predictions: bool = True,
             max_images: int = 0, split: str = "val", flip_perm: np.ndarray | None = None,
             crf: bool = False, predictions_dir: Path | None = None, progress: bool = True) -> dict:
    """Evaluate on a split; writes ``metrics.json`` and ``confusion.npy`` into ``out_dir`` and, with
    ``save_predictions``, label PNGs and overlays into ``predictions_dir`` (default
    ``out_dir/predictions``). ``crf``: refine the probabilities with the dense CRF (``pseudo/crf.py``)."""
    C = len(vocabulary)
    conf = np.zeros((C, C), np.int64)
    perm = None if flip_perm is None else torch.as_tensor(np.asarray(flip_perm)[:C], device=device).long()
    was_training = model.training
    model.eval()
    pred_dir = predictions_dir or out_dir / "predictions"
    if save_predictions:
        pred_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    palette = np.asarray(vocabulary.palette(), np.uint8).reshape(256, 3)
    total = len(loader.dataset) if hasattr(loader, "dataset") else 0
    bar = Progress(min(total, max_images) if max_images else total, f"evaluate {out_dir.name}", enabled=progress,
                   unit="img")
    for image, gt, rgb, iid in _items(loader, max_images):
        probs = predict(model, image.to(device), list(scales), flip, perm)
        if crf:
            from spml_train.pseudo.crf import dense_crf

            probs = dense_crf(rgb.to(device), probs / probs.sum(0, keepdim=True))
        pred = probs.argmax(0).cpu().numpy().astype(np.uint8)
        conf += confusion(pred, gt.numpy(), C, vocabulary.ignore)
        if save_predictions:
            (pred_dir / f"{iid}.png").write_bytes(encode_label_png(pred, vocabulary.palette()))
            over = (0.5 * rgb.numpy() + 0.5 * palette[pred]).astype(np.uint8)
            Image.fromarray(over).save(pred_dir / f"{iid}_overlay.jpg", quality=85)
        n += 1
        bar.update(1)
    bar.close()
    model.train(was_training)
    metrics = {
        **scores(conf, vocabulary.names),
        "split": split,
        "images": n,
        "pixel_accuracy": float(np.diag(conf).sum() / max(conf.sum(), 1) * 100),
        "scales": list(scales),
        "flip": flip,
        "crf": crf,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.save(out_dir / "confusion.npy", conf)
    return metrics


def iou_table(metrics: dict) -> str:
    rows = [f"{'class':<16} {'IoU':>7}"]
    for name, v in metrics["per_class_iou"].items():
        rows.append(f"{name:<16} {'-' if v is None else f'{v:7.2f}':>7}")
    rows.append(f"{'mIoU':<16} {metrics['mIoU']:7.2f}")
    return "\n".join(rows)


# --------------------------------------------------------------------------- nearest-neighbour retrieval


@torch.no_grad()
def _segments(model, image: torch.Tensor, grid: int, iters: int):
    """Embedding ``(D, h, w)``, k-means segment per grid pixel ``(h, w)`` and segment prototypes."""
    from spml_train.segments import segment_prototypes, spherical_kmeans

    emb = model(image[None])["embedding"].float()
    _, D, h, w = emb.shape
    valid = torch.ones((1, h, w), dtype=torch.bool, device=emb.device)
    seg = spherical_kmeans(emb, valid, grid=grid, iters=iters)[0]
    flat = emb[0].permute(1, 2, 0).reshape(-1, D)
    protos = segment_prototypes(flat, seg.reshape(-1), grid * grid)
    return emb[0], seg, protos


@torch.no_grad()
def retrieval_memory(model, loader, vocabulary: Vocabulary, device: torch.device, *, grid: int = 12,
                     iters: int = 10, max_images: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes ``(M, D)`` and classes ``(M,)`` of the labelled k-means segments of training images:
    a segment is labelled by the majority class of its labelled pixels (weak labels only)."""
    model.eval()
    C = len(vocabulary)
    protos, classes, n = [], [], 0
    for batch in loader:
        for image, weak in zip(batch["image"], batch["gt"]):
            emb, seg, p = _segments(model, image.to(device), grid, iters)
            h, w = seg.shape
            lab = F.interpolate(weak[None, None].float(), size=(h, w), mode="nearest")[0, 0].long().to(device)
            ok = lab < C
            if ok.any():
                votes = torch.zeros(grid * grid, C, device=device)
                votes.index_put_((seg[ok], lab[ok]), torch.ones_like(lab[ok], dtype=torch.float), accumulate=True)
                has = votes.sum(1) > 0
                protos.append(p[has])
                classes.append(votes[has].argmax(1))
            n += 1
            if max_images and n >= max_images:
                break
        if max_images and n >= max_images:
            break
    if not protos:
        raise ValueError("no labelled training segment to retrieve from (tags-only data has none before CAMs)")
    return torch.cat(protos), torch.cat(classes)


@torch.no_grad()
def predict_retrieval(model, image: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                      *, k: int = 20, grid: int = 12, iters: int = 10) -> torch.Tensor:
    """Labels ``(H, W)``: each k-means segment of the image takes the majority class of its ``k``
    most similar labelled training prototypes (cosine), SPML's nearest-neighbour inference."""
    _, H, W = image.shape
    _, seg, p = _segments(model, image, grid, iters)
    mem_p, mem_c = memory
    top = (p @ mem_p.T).topk(min(k, len(mem_p)), dim=1).indices           # (S, k)
    votes = F.one_hot(mem_c[top], num_classes).sum(1)                      # (S, C)
    seg_class = votes.argmax(1)
    pred = seg_class[seg.clamp(min=0)]
    return F.interpolate(pred[None, None].float(), size=(H, W), mode="nearest")[0, 0].long()


def evaluate_retrieval(model, train_loader, val_loader, vocabulary: Vocabulary, *, device: torch.device,
                       k: int = 20, grid: int = 12, max_train: int = 0, max_images: int = 0,
                       progress: bool = True) -> dict:
    """mIoU of nearest-neighbour retrieval inference over the validation split."""
    was_training = model.training
    memory = retrieval_memory(model, train_loader, vocabulary, device, grid=grid, max_images=max_train)
    C = len(vocabulary)
    conf = np.zeros((C, C), np.int64)
    n = 0
    total = len(val_loader.dataset) if hasattr(val_loader, "dataset") else 0
    bar = Progress(min(total, max_images) if max_images else total, "evaluate retrieval", enabled=progress,
                   unit="img")
    for image, gt, _, _ in _items(val_loader, max_images):
        pred = predict_retrieval(model, image.to(device), memory, C, k=k, grid=grid)
        conf += confusion(pred.cpu().numpy(), gt.numpy(), C, vocabulary.ignore)
        n += 1
        bar.update(1)
    bar.close()
    model.train(was_training)
    return {**scores(conf, vocabulary.names), "images": n, "k": k, "memory_segments": int(len(memory[0]))}
