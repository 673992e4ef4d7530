"""Random walk on embedding affinities: spreads sparse class scores over similar pixels.

``SPML.md`` section 6, per image, on the embedding at 1/8 of the image:

* affinity ``a_ij = exp(beta (cos(e_i, e_j) - 1))`` with beta 5, averaged over
  the image and its flip (the flipped view's embedding mapped back);
* raised to the power 20 and column-normalised into the transition matrix
  ``T_ij = a_ij / sum_k a_kj``;
* ``T`` squared 6 times (``T^64``); scores ``s (K, n)`` become ``s T^64``.

``s T^64`` is computed as 64 products ``s <- s T`` instead of six squarings of
``T``: the same matrix product (associativity), but ``64 K n^2`` instead of
``6 n^3`` multiply-adds (10x fewer at n = 4096, K = 21), and no second n x n
buffer. Memory is one ``(B, n, n)`` transition batch: callers bound it with
``batch`` (64 MiB per 512^2 image in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def transition(emb: torch.Tensor, emb_flip: torch.Tensor | None = None, *, beta: float = 5.0,
               power: float = 20.0) -> torch.Tensor:
    """Column-normalised transition matrices ``(B, n, n)`` from unit embeddings ``(B, D, h, w)``.

    ``emb_flip``: the embedding of the horizontally flipped image, already flipped back.
    """
    B, D, h, w = emb.shape
    views = [emb] if emb_flip is None else [emb, emb_flip]
    aff = None
    for e in views:
        e = F.normalize(e.float().reshape(B, D, h * w), dim=1)
        a = torch.exp(beta * (torch.bmm(e.transpose(1, 2), e) - 1))
        aff = a if aff is None else aff + a
    aff = (aff / len(views)) ** power
    return aff / aff.sum(1, keepdim=True).clamp(min=1e-30)


def random_walk(scores: torch.Tensor, emb: torch.Tensor, emb_flip: torch.Tensor | None = None, *,
                beta: float = 5.0, power: float = 20.0, log2_steps: int = 6) -> torch.Tensor:
    """Propagated scores ``(B, K, h, w)``: ``scores (B, K, h, w)`` times ``T^(2^log2_steps)``.

    ``emb`` (and ``emb_flip``) must be on the scores' grid; resize them first (``to_grid``).
    """
    B, K, h, w = scores.shape
    if emb.shape[0] != B or emb.shape[-2:] != (h, w):
        raise ValueError(f"embedding {tuple(emb.shape)} does not match scores {tuple(scores.shape)}")
    T = transition(emb, emb_flip, beta=beta, power=power)
    s = scores.float().reshape(B, K, h * w)
    for _ in range(2 ** log2_steps):
        s = torch.bmm(s, T)
    return s.reshape(B, K, h, w)


def to_grid(emb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Embedding ``(B, D, h, w)`` resized (bilinear) to ``size`` and normalised to unit length again."""
    if tuple(emb.shape[-2:]) != tuple(size):
        emb = F.interpolate(emb.float(), size=size, mode="bilinear", align_corners=False)
    return F.normalize(emb.float(), dim=1)
