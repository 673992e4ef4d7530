"""Segments of the embedding: batched spherical k-means, prototypes and the memory bank.

Conventions (``SPML.md`` sections 2-3):

* embeddings are unit-length ``(B, D, H, W)`` maps at stride 4; ``valid (B, H, W) bool`` is False
  on ignored pixels (padding, void), which take part in nothing, clustering included;
* location features are ``y, x`` in ``[-0.5, 0.5]`` (first row / column at -0.5, last at +0.5),
  appended to the embedding and re-normalised: ``normalize([e; y; x])``. k-means clusters these
  vectors, and the V relation compares them (``with_location``);
* a prototype is ``normalize(sum of member vectors)``; a segment with no member (or a zero sum) has a
  zero prototype.

The segment table itself (cluster x region x label, and the relations) is built by
``weaklabels.segsets.build_segment_sets``; this module gives it the cluster ids and turns its
``pixel_segment`` back into differentiable prototypes.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor

from weaklabels.segsets import Memory


def location_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> Tensor:
    """``(2, H, W)``: ``y`` then ``x``, each running linearly from -0.5 to 0.5 (0 for a size of 1)."""
    def axis(n: int) -> Tensor:
        if n == 1:
            return torch.zeros(1, device=device, dtype=dtype)
        return torch.linspace(-0.5, 0.5, n, device=device, dtype=dtype)

    y, x = torch.meshgrid(axis(height), axis(width), indexing="ij")
    return torch.stack([y, x])


def with_location(emb: Tensor) -> Tensor:
    """``normalize([e; y; x])``: ``emb (B, D, H, W)`` -> ``(B, D + 2, H, W)``, unit norm.

    Differentiable; the features of k-means and of the V relation (pixels and prototypes alike).
    """
    B, _, H, W = emb.shape
    loc = location_grid(H, W, device=emb.device, dtype=emb.dtype).expand(B, 2, H, W)
    return F.normalize(torch.cat([emb, loc], dim=1), dim=1)


@torch.no_grad()
def spherical_kmeans(emb: Tensor, valid: Tensor, grid: int = 6, iters: int = 10) -> Tensor:
    """Cluster ids ``(B, H, W) long`` in ``0 .. grid * grid - 1`` per image, -1 where not ``valid``.

    ``emb (B, D, H, W)``: unit norm; ``valid (B, H, W) bool``. Spherical k-means on
    ``normalize([e; y; x])``, all images at once (a ``(B * K, D + 2)`` prototype table): the start
    is a regular ``grid x grid`` partition of the image; each of ``iters`` iterations sets every
    prototype to the normalised sum of its members and reassigns each pixel to the prototype of
    highest cosine. A cluster that empties is dropped: its prototype would be zero, so it is masked
    out of the argmax and never wins a pixel back, and its id is simply absent from the output (ids
    are not renumbered). Ignored pixels have zero features and are neither members nor assigned.
    No autograd: k-means gives no gradient (the reference's per-image loop with autograd on wastes
    time and memory).
    """
    B, D, H, W = emb.shape
    K, N = grid * grid, H * W
    feats = with_location(emb.float()).flatten(2).transpose(1, 2)       # (B, N, D + 2)
    valid = valid.reshape(B, N).bool()
    feats = feats * valid[..., None]
    # grid start: cell (row * grid // H, col * grid // W)
    cy = torch.arange(H, device=emb.device) * grid // H
    cx = torch.arange(W, device=emb.device) * grid // W
    assign = (cy[:, None] * grid + cx[None, :]).reshape(1, N).expand(B, N)
    offset = (torch.arange(B, device=emb.device) * K)[:, None]
    members = feats[valid]                                               # (V, D + 2)
    for _ in range(iters):
        table = feats.new_zeros(B * K, D + 2).index_add_(0, (assign + offset)[valid], members)
        alive = (table.square().sum(1) > 0).view(B, 1, K)
        protos = F.normalize(table, dim=1).view(B, K, D + 2)
        sim = torch.bmm(feats, protos.transpose(1, 2))                   # (B, N, K)
        assign = sim.masked_fill_(~alive, float("-inf")).argmax(2)
    return torch.where(valid, assign, torch.full_like(assign, -1)).view(B, H, W)


def segment_prototypes(emb_flat: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """``(S, D)`` prototypes ``normalize(sum of member embeddings)``, differentiable.

    ``emb_flat (P, D)``; ``segment (P,) long``: each pixel's segment, -1 for pixels in none (e.g.
    ``SegmentSets.pixel_segment``). A segment without members gets a zero prototype (and a zero,
    not NaN, gradient).
    """
    return F.normalize(segment_sums(emb_flat, segment, num_segments), dim=1)


def segment_sums(emb_flat: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """``(S, D)`` sums of member embeddings (what data-parallel ranks exchange), differentiable."""
    keep = segment >= 0
    sums = emb_flat.new_zeros(num_segments, emb_flat.shape[1])
    return sums.index_add(0, segment[keep], emb_flat[keep])


@torch.no_grad()
def step_segments(emb: Tensor, sets) -> tuple[Tensor, Tensor, Tensor]:
    """What a training step leaves in the memory bank (SPML.md 3.7): its own batch segments as
    detached prototypes ``(S, D)`` of ``emb (B, D, H, W)``, with their label sets and tags, from the
    ``weaklabels.segsets.SegmentSets`` the step built."""
    S = sets.num_batch_segments
    flat = emb.detach().permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
    return segment_prototypes(flat, sets.pixel_segment, S), sets.label_set[:S], sets.tags[:S]


class MemoryBank:
    """Detached prototypes of the last ``iterations`` pushes with their label sets and tags.

    ``push(prototypes (S, D), label_set (S, C), tags (S, C))`` once per training step;
    ``get()`` returns ``(prototypes (M, D), Memory)`` in push order (oldest first), the form
    ``build_segment_sets(memory=...)`` and the loss expect. ``iterations = 0`` keeps nothing
    (DensePose). Before any push, shapes are ``(0, dim)`` / ``(0, num_classes)`` when those are
    given, else ``(0, 0)``.
    """

    def __init__(self, iterations: int, *, dim: int = 0, num_classes: int = 0):
        if iterations < 0:
            raise ValueError(f"memory bank iterations must be >= 0, got {iterations}")
        self.iterations = iterations
        self._dim, self._num_classes = dim, num_classes
        self._entries: deque[tuple[Tensor, Tensor, Tensor]] = deque()

    def __len__(self) -> int:
        return sum(int(p.shape[0]) for p, _, _ in self._entries)

    def push(self, prototypes: Tensor, label_set: Tensor, tags: Tensor) -> None:
        if not (prototypes.shape[0] == label_set.shape[0] == tags.shape[0]):
            raise ValueError(f"memory push: {prototypes.shape[0]} prototypes, {label_set.shape[0]} "
                             f"label sets and {tags.shape[0]} tag rows; expected equal counts")
        self._dim, self._num_classes = int(prototypes.shape[1]), int(label_set.shape[1])
        if self.iterations == 0:
            return
        self._entries.append((prototypes.detach().clone(), label_set.bool().clone(), tags.bool().clone()))
        while len(self._entries) > self.iterations:
            self._entries.popleft()

    def get(self) -> tuple[Tensor, Memory]:
        if not self._entries:
            empty = torch.zeros(0, self._num_classes, dtype=torch.bool)
            return torch.zeros(0, self._dim), Memory(empty, empty.clone())
        protos, sets, tags = zip(*self._entries)
        return torch.cat(protos), Memory(torch.cat(sets), torch.cat(tags))

    def state_dict(self) -> dict:
        return {"iterations": self.iterations, "dim": self._dim, "num_classes": self._num_classes,
                "entries": [{"prototypes": p, "label_set": s, "tags": t} for p, s, t in self._entries]}

    def load_state_dict(self, state: dict) -> None:
        self._dim, self._num_classes = int(state["dim"]), int(state["num_classes"])
        self._entries = deque((e["prototypes"], e["label_set"], e["tags"]) for e in state["entries"])
        # a resumed run with a smaller bank keeps only the newest entries
        while len(self._entries) > self.iterations:
            self._entries.popleft()
