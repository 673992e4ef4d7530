"""Stage 2: a fresh softmax head on the frozen stage-1 embedding, trained on dense pseudo labels.

``SPML.md`` section 6: the reported results come from this classifier. It has
the joint head's shape (3 x 3 conv D -> 2D, BN, ReLU, dropout, 1 x 1 conv) and
trains with cross-entropy on every pixel of the pseudo label (255 ignored);
backbone and embedding head stay frozen, batch norms included. Unlike the
released code (``SPML.md`` section 8) every annotation type trains on its
pseudo labels, never on the raw sparse ones.
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F

from spml_train.model import SPMLNet, SoftmaxHead, freeze, lr_factor
from spml_train.progress import Progress

log = logging.getLogger(__name__)


def stage2_model(stage1: SPMLNet, num_classes: int, dropout: float = 0.1) -> SPMLNet:
    """A copy of ``stage1`` with a freshly initialised head; everything but the head frozen."""
    model = copy.deepcopy(stage1)
    dim = model.classifier.conv.in_channels
    model.classifier = SoftmaxHead(dim, num_classes, dropout).to(next(stage1.parameters()).device)
    return freeze(model, ("backbone", "embed"))


def train_head(model: SPMLNet, batches, iterations: int, lr: float, device: torch.device, *,
               amp: bool = True, momentum: float = 0.9, weight_decay: float = 5e-4, poly_power: float = 0.9,
               warmup: int = 0, warmup_factor: float = 0.1, log_every: int = 20, on_log=None,
               progress: bool = True, desc: str = "stage 2 head") -> list[float]:
    """SGD on the head, stage 1's schedule template (``SPML.md`` section 5): biases at twice ``lr``
    without weight decay, a linear warm-up over ``warmup`` steps from ``warmup_factor``, then poly
    decay. ``batches`` yields ``(epoch, position, batch)`` with dense ``label`` maps. Returns the loss
    every ``log_every`` steps (and passes a record to ``on_log``)."""
    head = model.classifier
    decay = [p for n, p in head.named_parameters() if not n.endswith("bias")]
    no_decay = [p for n, p in head.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay, "lr_mult": 1.0},
                           {"params": no_decay, "weight_decay": 0.0, "lr_mult": 2.0}], lr=lr, momentum=momentum)
    model.train()
    losses = []
    bar = Progress(iterations, desc, enabled=progress)
    for it in range(iterations):
        _, _, batch = next(batches)
        factor = lr_factor(it, iterations, warmup=warmup, warmup_factor=warmup_factor, power=poly_power)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"] * factor
        images = batch["image"].to(device, non_blocking=True)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            feats = model.backbone(images)
            emb = model.embed(feats["layer4"], tuple(feats["layer1"].shape[-2:])).float()
        logits = head(emb)
        label = batch["label"].to(device)
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
        target = torch.where(label < logits.shape[1], label, torch.full_like(label, -100))
        if not (target >= 0).any():
            bar.update(1)
            continue
        loss = F.cross_entropy(logits, target, ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % log_every == 0 or it == iterations - 1:
            losses.append(float(loss.detach()))
            if on_log is not None:
                on_log({"iter": it + 1, "lr": opt.param_groups[0]["lr"], "loss": losses[-1]})
            bar.update(0, loss=losses[-1])
        bar.update(1)
    bar.close()
    return losses
