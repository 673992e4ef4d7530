"""Class activation maps: the labels of relation C for image tags and boxes.

SPML (``SPML.md`` section 6) takes C's pixel labels for tags and boxes from
CAMs of a classifier trained on image tags:

* a multi-label classifier: the dilated ResNet, global average pooling and a
  1 x 1 convolution per foreground class, trained with binary cross-entropy on
  the tags of the full (uncropped) annotation;
* CAMs: ReLU of the class convolution on the last features, summed over the
  image and its flip at several scales (``data.cam.scales``; PSA / SEAM use
  0.5, 1, 1.5, 2 on VOC), upsampled to the image, each class normalised by its
  maximum, classes absent from the tags zeroed; background score
  ``(1 - max CAM) ** alpha`` (alpha 6);
* tags: a pixel whose best score (background included) is above
  ``threshold`` (0.2) takes that class, the rest stays unlabelled;
* boxes: inside each box the box class's CAM is normalised by its maximum in
  the box and thresholded at 0.5 (below: the box stays a candidate set);
  outside every box the weak label already says background.

``cam_labels`` writes the training split again with these labels in
``weak_label`` (everything else unchanged), so stage 1 reads it as usual.
Externally computed CAMs are accepted as a folder of ``{image_id}.npy``
arrays ``(C_fg, H, W)`` (``cam_dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spml_train.model import build_backbone, load_backbone, lr_factor
from spml_train.progress import Progress
from weaklabels.raster import box_pixels

log = logging.getLogger(__name__)


class CAMNet(nn.Module):
    """Dilated ResNet + a 1 x 1 class convolution; ``forward`` gives class logits ``(B, K)`` and
    ``cams`` the class maps ``(B, K, H/8, W/8)`` before pooling."""

    def __init__(self, backbone: str, num_foreground: int, weights: str = "none"):
        super().__init__()
        self.backbone = build_backbone(backbone)
        if weights != "none":
            load_backbone(self.backbone, weights)
        channels = self.backbone.out_channels
        self.classifier = nn.Conv2d(channels, num_foreground, 1, bias=False)

    def cams(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(images)["layer4"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.cams(images).mean((2, 3))


def train_classifier(model: CAMNet, batches, foreground: list[int], iterations: int, lr: float,
                     device: torch.device, *, progress: bool = True) -> list[float]:
    """Multi-label BCE on image tags; returns the loss every 10 steps."""
    opt = torch.optim.SGD([{"params": model.backbone.parameters(), "lr": lr},
                           {"params": model.classifier.parameters(), "lr": 10 * lr}],
                          momentum=0.9, weight_decay=5e-4)
    model.train()
    losses = []
    bar = Progress(iterations, "cam classifier", enabled=progress)
    for it in range(iterations):
        _, _, batch = next(batches)
        for g, base in zip(opt.param_groups, (lr, 10 * lr)):
            g["lr"] = base * lr_factor(it, iterations)
        target = batch["tags"][:, foreground].float().to(device)
        loss = F.binary_cross_entropy_with_logits(model(batch["image"].to(device)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 10 == 0:
            losses.append(float(loss.detach()))
            bar.update(0, bce=losses[-1])
        bar.update(1)
    bar.close()
    return losses


@torch.no_grad()
def image_cams(model: CAMNet, image: torch.Tensor, scales=(1.0,)) -> torch.Tensor:
    """Normalised CAMs ``(K, H, W)`` in 0..1 of one image ``(3, H, W)``: the ReLU'd class maps of
    the image and its flip at each of ``scales``, upsampled to the image and summed, each class
    divided by its maximum. Larger scales give finer maps (the classifier's stride is 8)."""
    model.eval()
    H, W = image.shape[-2:]
    total = None
    for s in scales:
        x = image[None] if s == 1 else F.interpolate(image[None], scale_factor=float(s), mode="bilinear",
                                                     align_corners=False)
        c = F.relu(model.cams(torch.cat([x, x.flip(-1)])).float())
        c = F.interpolate(c[:1] + c[1:].flip(-1), size=(H, W), mode="bilinear", align_corners=False)[0]
        total = c if total is None else total + c
    return total / total.flatten(1).amax(1).clamp(min=1e-5)[:, None, None]


def labels_from_cams(cams: np.ndarray, foreground: list[int], tags: list[int], weak: np.ndarray,
                     boxes: list[dict], *, unlabelled: int, background: int, alpha: float = 6.0,
                     threshold: float = 0.2, box_threshold: float = 0.5) -> np.ndarray:
    """C's label map from CAMs ``(K, H, W)`` (foreground classes in ``foreground`` order)."""
    h, w = weak.shape
    if boxes:
        out = weak.copy()  # background outside every box, unlabelled / ignore kept
        for (c0, r0, c1, r1), b in zip(box_pixels(np.array([[b["x0"], b["y0"], b["x1"], b["y1"]] for b in boxes]), h, w),
                                       boxes):
            k = foreground.index(b["label"])
            crop = cams[k, r0:r1, c0:c1]
            if crop.size and crop.max() > 0:
                sel = crop / crop.max() >= box_threshold
                region = out[r0:r1, c0:c1]
                region[sel & (region == unlabelled)] = b["label"]
        return out
    scores = np.zeros((len(foreground) + 1, h, w), np.float32)
    present = [foreground.index(t) for t in tags if t in foreground]
    for k in present:
        scores[k + 1] = cams[k]
    scores[0] = (1 - scores[1:].max(0)) ** alpha
    best = scores.argmax(0)
    classes = np.array([background] + list(foreground), np.uint8)
    out = np.where(scores.max(0) > threshold, classes[best], unlabelled).astype(np.uint8)
    out[weak == 255] = 255  # padding / ignore stays ignore
    return out


def cam_labels(model: CAMNet, src: Path, split: str, dst: Path, vocabulary, device: torch.device,
               *, kind: str, alpha: float = 6.0, threshold: float = 0.2, cam_dir: Path | None = None,
               scales=(1.0,), progress: bool = True) -> dict:
    """Write ``src``'s ``split`` again into ``dst`` with CAM-derived ``weak_label`` maps; returns the
    summary of ``relabel_split`` (with the labels' mIoU where the split carries ``gt``)."""
    from spml_train.data import normalize
    from spml_train.pseudo.labels import relabel_split

    fg = list(vocabulary.foreground)

    def label(row: dict, rgb: np.ndarray, weak: np.ndarray) -> np.ndarray:
        if cam_dir is not None:
            path = cam_dir / f"{row['image_id']}.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{cam_dir}: no CAM array for image {row['image_id']!r} ({path.name})")
            cams = np.load(path)
            if cams.shape != (len(fg), *weak.shape):
                raise ValueError(f"{path}: CAMs of shape {cams.shape}, expected {(len(fg), *weak.shape)} "
                                 f"(foreground classes, height, width)")
        else:
            cams = image_cams(model, normalize(rgb).to(device), scales).cpu().numpy()
        boxes = [b for b in row["boxes"] if not b["crowd"]] if kind == "boxes" else []
        return labels_from_cams(cams, fg, row["tags"], weak, boxes, unlabelled=vocabulary.unlabelled,
                                background=vocabulary.background, alpha=alpha, threshold=threshold)

    return relabel_split(src, split, dst, vocabulary, label,
                         {"stage": "cam", "source": str(src), "split": split, "kind": kind, "alpha": alpha,
                          "threshold": threshold, "scales": list(scales),
                          "external": str(cam_dir) if cam_dir else None},
                         progress=progress, desc="cam labels")
