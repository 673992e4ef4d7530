"""SegSort+: the pixel-to-segment contrastive loss of SPML (``SPML.md`` section 4).

For pixel ``i`` (unit embedding ``e_i``, own segment ``s(i)``) and the candidate prototypes ``p_k``
of one relation (``weaklabels.segsets.Relation``), with ``l_ik = kappa * e_i . p_k``::

    positives P_i = visible & related & k != s(i)
    negatives N_i = visible & ~related & k != s(i)
    num_i  = logsumexp_{k in P_i} l_ik          or l_{i,s(i)} when P_i is empty (fallback)
    den_i  = logaddexp(num_i, logsumexp_{k in N_i} l_ik)
    loss_i = den_i - num_i                      (= -log(num / den) of the paper)

The own segment is never a positive nor a negative: it enters only as the fallback numerator (and
hence the denominator). That is the "\\ {s}" of the paper's formula, and it also covers O's images
with no foreground tag, whose own segment is *unrelated* to the pixel: it is not counted as a
negative, the pixel has no positive and falls back to its own segment.

Numerics: fp32 (or fp64 when given), log space throughout, ``-inf`` masks, never ``exp`` of a raw
logit (``exp(kappa)`` overflows fp16 for kappa above about 11; kappa reaches 16).

Memory: the ``n x m`` logit matrix is never kept. ``_SegSortFunction`` walks the pixels in chunks of
``chunk`` rows; the forward keeps only ``num_i`` and ``den_i`` (two floats per pixel), and the
backward recomputes each chunk's logits and masks and applies the closed-form gradient
``dloss_i / dl_ik = softmax over den's set - softmax over num's set``. A custom ``autograd.Function``
rather than ``torch.utils.checkpoint`` per chunk: checkpointing would recompute the whole chunk
forward *and* then keep its intermediates (logits, masks, exp) alive for autograd's backward of
that chunk, whereas the closed form needs one matmul to recompute and two to back-propagate, with
only ``num`` / ``den`` saved, so working memory is a few ``chunk x m`` blocks and time is about
three matmuls of the dense form.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import Tensor

from weaklabels.segsets import Relation, SegmentSets

from .segments import segment_prototypes, with_location


def _block(x: Tensor, p: Tensor, rel: Relation, rows: slice, cols: Tensor | None, kappa: float,
           shift: Tensor | None = None):
    """Logits ``(r, c)`` (minus ``shift (r,)`` per row when given, in the same kernel), positives and
    all counted candidates (positives or negatives), both ``(r, c) bool``, for pixel rows ``rows`` and
    candidate columns ``cols`` (``None``: all of them; otherwise ``p`` holds those columns only)."""
    if shift is None:
        logits = kappa * (x @ p.T)
    else:
        logits = torch.addmm(-shift[:, None], x, p.T, alpha=kappa)
    if cols is None:
        counted = rel.segments[None, :] != rel.own[rows, None]
        if rel.pixel_group is not None:  # (rel.related's visibility, without its all-true mask when ungrouped)
            counted &= rel.pixel_group[rows, None] == rel.segment_group[None, :]
        return logits, rel.relation(rows) & counted, counted
    # a group block: every column is visible to every row
    counted = rel.segments[None, cols] != rel.own[rows, None]
    return logits, rel.relation(rows, cols) & counted, counted


def _blocks(rel: Relation, n: int, chunk: int) -> list[tuple[slice, Tensor | None]]:
    """``(rows, cols)`` blocks covering the relation's pixels. Without groups: chunks of ``chunk``
    rows against every candidate. With groups (V: each image's own segments) and pixels sorted by
    group: each group's rows against that group's candidates only, so the work is the sum of the
    per-image blocks (16 x 16k x 86 at SPML's batch) instead of all pixels x all segments
    (262k x 1.4k): 16x less. Unsorted groups fall back to full rows with a visibility mask."""
    g = rel.pixel_group
    if g is None or n == 0 or bool((g[1:] < g[:-1]).any()):
        return [(slice(s, min(s + chunk, n)), None) for s in range(0, n, chunk)]
    groups, counts = torch.unique_consecutive(g, return_counts=True)
    order = torch.argsort(rel.segment_group, stable=True)
    s_groups, s_counts = torch.unique_consecutive(rel.segment_group[order], return_counts=True)
    cols_of = dict(zip(s_groups.tolist(), torch.split(order, s_counts.tolist())))
    empty = order[:0]
    out, start = [], 0
    for grp, cnt in zip(groups.tolist(), counts.tolist()):
        cols = cols_of.get(grp, empty)
        for s in range(start, start + cnt, chunk):
            out.append((slice(s, min(s + chunk, start + cnt)), cols))
        start += cnt
    return out


def _patterns(rel: Relation, rows: slice, cols: Tensor | None, limit: int = 64):
    """``(inv (r,), R (U, c) bool)``: the block's relation as at most ``limit`` distinct rows ``R``
    (pixels with the same key or the same label / tag set share one) and each pixel's row index;
    ``None`` when there are more. C has a pattern per class or candidate set, O one per tag set."""
    if rel.pixel_key is not None:
        uniq, inv = torch.unique(rel.pixel_key[rows], return_inverse=True)
        if len(uniq) > limit:
            return None
        seg = rel.segment_key if cols is None else rel.segment_key[cols]
        return inv, uniq[:, None] == seg[None, :]
    sets = rel.pixel_sets(rows)
    K = sets.shape[1]
    if K <= 62:  # a set as the bits of one integer: a 1-D unique instead of a row-wise one
        bits = torch.arange(K, device=sets.device)
        uniq, inv = torch.unique((sets.long() << bits).sum(1), return_inverse=True)
        usets = ((uniq[:, None] >> bits) & 1).bool()
    else:
        usets, inv = torch.unique(sets, dim=0, return_inverse=True)
    if len(usets) > limit:
        return None
    seg = rel.segment_set if cols is None else rel.segment_set[cols]
    return inv, (usets.float() @ seg.float().T) > 0


def _own_column(rel: Relation, rows: slice, cols: Tensor | None, size: int) -> Tensor:
    """``(r,)``: the column of each pixel's own segment among the block's candidates, -1 if absent."""
    seg = rel.segments if cols is None else rel.segments[cols]
    where = torch.full((size,), -1, dtype=torch.long, device=seg.device)
    where[seg] = torch.arange(len(seg), device=seg.device)
    return where[rel.own[rows]]


def _exp_without_own(x: Tensor, p: Tensor, kappa: float, b: Tensor, own_col: Tensor) -> Tensor:
    """``E = exp(kappa x p^T - b)`` ``(r, c)`` with each pixel's own-segment entry set to 0."""
    E = torch.addmm(-b[:, None], x, p.T, alpha=kappa).exp_()
    has = own_col >= 0
    E[torch.arange(len(x), device=x.device)[has], own_col[has]] = 0
    return E


@contextlib.contextmanager
def _exact_matmul():
    """Sums taken as matrix products must not drop to TF32 (10-bit mantissa) when a caller enabled it."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _masked_lse(logits: Tensor, mask: Tensor) -> Tensor:
    """Row-wise logsumexp over ``mask`` (-inf for an empty row)."""
    return torch.logsumexp(torch.where(mask, logits, float("-inf")), dim=1)


# exp(-limit) stays a normal number: fp32's smallest is about exp(-87), fp64's exp(-708)
_EXP_RANGE = {torch.float32: 80.0, torch.float64: 700.0}


def _shift(x: Tensor, p: Tensor, kappa: float) -> Tensor | None:
    """Per-row upper bounds ``(r,)`` of the logits (Cauchy-Schwarz: ``kappa |x_i| max_k |p_k|``) when
    ``exp(logit - bound)`` cannot underflow for any logit, else ``None`` (then log-sum-exp is used)."""
    if p.shape[0] == 0:
        return None
    bound = kappa * x.norm(dim=1) * p.norm(dim=1).max()
    return bound if float(2 * bound.max()) < _EXP_RANGE.get(x.dtype, 0.0) else None


class _SegSortFunction(torch.autograd.Function):
    """Per-pixel SegSort+ loss ``(n,)`` from ``x (n, D)``, ``p (m, D)`` (the relation's candidate
    prototypes, in ``rel.segments`` order) and ``p_own (n, D)`` (each pixel's own prototype).

    Fast path (unit vectors, kappa up to 40 in fp32): every logit lies within ``[-b_i, b_i]``, so
    ``E = exp(l - b_i)`` is in ``[exp(-2 b_i), 1]``, neither overflowing nor underflowing. One ``exp``
    per block then gives both log-sums as masked sums (``log sum E + b_i``) and, in backward, both
    softmaxes as ``E`` times a per-row factor, instead of a max / subtract / exp / log pass per mask.
    Otherwise the same quantities come from ``logsumexp`` over ``-inf``-masked logits.
    """

    @staticmethod
    def forward(ctx, x, p, p_own, rel, kappa, chunk):
        n = x.shape[0]
        own_logit = kappa * (x * p_own).sum(1)
        num, den = torch.empty_like(own_logit), torch.empty_like(own_logit)
        shift = _shift(x, p, kappa)
        blocks = _blocks(rel, n, chunk)
        size = int(torch.maximum(rel.segments.max(), rel.own.max())) + 1 if n and len(rel.segments) else 1
        pats: list = []
        for rows, cols in blocks:
            b = None if shift is None else shift[rows]
            pc = p if cols is None else p[cols]
            # every candidate visible (no groups, or a group block): the relation has few distinct
            # rows, so the two sums are one matrix product with them, no (r, c) masks at all
            pat = _patterns(rel, rows, cols) if shift is not None and (rel.pixel_group is None or cols is not None) \
                else None
            pats.append(pat)
            if pat is not None:
                inv, R = pat
                own_col = _own_column(rel, rows, cols, size)
                E = _exp_without_own(x[rows], pc, kappa, b, own_col)
                with _exact_matmul():
                    T = E @ torch.cat([R.T.to(E.dtype), E.new_ones(R.shape[1], 1)], 1)   # (r, U + 1)
                own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
                has_pos = (R.sum(1)[inv] - own_related.long()) > 0
                lse_pos = T.gather(1, inv[:, None])[:, 0].log_() + b
                lse_all = T[:, -1].log() + b
                num[rows] = torch.where(has_pos, lse_pos, own_logit[rows])
                den[rows] = torch.where(has_pos, lse_all, torch.logaddexp(own_logit[rows], lse_all))
                continue
            logits, pos, counted = _block(x[rows], pc, rel, rows, cols, kappa, b)
            has_pos = pos.any(1)
            if shift is not None:
                # positives and negatives together are the counted set: with a positive,
                # den = log sum_counted; without, den = logaddexp(own logit, log sum_counted)
                E = logits.exp_().mul_(counted)
                lse_pos = torch.where(pos, E, 0).sum(1).log_() + b
                lse_all = E.sum(1).log_() + b
                num[rows] = torch.where(has_pos, lse_pos, own_logit[rows])
                den[rows] = torch.where(has_pos, lse_all, torch.logaddexp(own_logit[rows], lse_all))
            else:
                num[rows] = torch.where(has_pos, _masked_lse(logits, pos), own_logit[rows])
                neg = counted.logical_xor_(pos)                           # counted & ~pos
                den[rows] = torch.logaddexp(num[rows], _masked_lse(logits, neg))
        ctx.save_for_backward(x, p, p_own, own_logit, num, den)
        ctx.rel, ctx.kappa, ctx.blocks, ctx.pats, ctx.size = rel, kappa, blocks, pats, size
        return den - num

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        x, p, p_own, own_logit, num, den = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            return _SegSortFunction._backward(x, p, p_own, own_logit, num, den, grad_loss, ctx)

    @staticmethod
    def _backward(x, p, p_own, own_logit, num, den, grad_loss, ctx):
        rel, kappa = ctx.rel, ctx.kappa
        grad_x, grad_p, grad_own = torch.empty_like(x), torch.zeros_like(p), torch.empty_like(p_own)
        inf = float("-inf")
        shift = _shift(x, p, kappa)
        for (rows, cols), pat in zip(ctx.blocks, ctx.pats):
            xc, go = x[rows], grad_loss[rows].to(x.dtype)
            b = None if shift is None else shift[rows]
            pc = p if cols is None else p[cols]
            # d loss / d logit: softmax over den's set minus softmax over num's set
            if pat is not None:
                inv, R = pat
                own_col = _own_column(rel, rows, cols, ctx.size)
                own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
                has_pos = (R.sum(1)[inv] - own_related.long()) > 0
                a_den = (b - den[rows]).exp() * go
                a_num = (b - num[rows]).exp() * go
                g = _exp_without_own(xc, pc, kappa, b, own_col)
                g *= torch.where(R[inv], (a_den - a_num)[:, None], a_den[:, None])
            elif shift is not None:
                logits, pos, counted = _block(xc, pc, rel, rows, cols, kappa, b)
                has_pos = pos.any(1)
                a_den = (b - den[rows]).exp() * go          # exp(l - den) = E exp(b - den)
                a_num = (b - num[rows]).exp() * go
                g = logits.exp_().mul_(counted)
                g *= torch.where(pos, (a_den - a_num)[:, None], a_den[:, None])
            else:
                logits, pos, counted = _block(xc, pc, rel, rows, cols, kappa, b)
                has_pos = pos.any(1)
                # masked logits are -inf before exp, so exp never sees a large positive exponent
                g = (torch.where(counted, logits, inf) - den[rows, None]).exp_()
                g -= (torch.where(pos, logits, inf) - num[rows, None]).exp_()
                g *= go[:, None]
            # the own segment carries gradient only as the fallback numerator
            g_own = torch.where(has_pos, torch.zeros_like(go), (own_logit[rows] - den[rows]).exp() - 1) * go
            grad_x[rows] = kappa * (g @ pc + g_own[:, None] * p_own[rows])
            if cols is None:
                grad_p += kappa * (g.T @ xc)
            else:
                grad_p.index_add_(0, cols, kappa * (g.T @ xc))
            grad_own[rows] = kappa * g_own[:, None] * xc
        return grad_x, grad_p, grad_own, None, None, None


def auto_chunk(m: int, budget_bytes: int = 2 << 30) -> int:
    """Pixel rows per chunk so that a chunk's working blocks (fp32 logits, a gradient block and
    three bool masks, about 12 bytes per entry) stay within ``budget_bytes``: fewer, larger chunks
    on a GPU, where each chunk costs some 30 kernel launches."""
    return max(1024, budget_bytes // (12 * max(m, 1)))


def segsort_loss(emb: Tensor, protos: Tensor, rel: Relation, kappa: float, chunk: int = 0) -> Tensor:
    """SegSort+ for one relation, averaged over its pixels: a scalar.

    ``emb (N_all, D)``: every pixel of the batch, flattened as ``B * H * W`` (``rel.pixels`` index
    it); ``protos (S_total, D)``: every segment of the table, batch then memory (``rel.own`` and
    ``rel.segments`` index it). Both unit norm. Computed in chunks of ``chunk`` pixels (0: about
    2 GiB of working blocks, ``auto_chunk``), in fp32
    (fp64 inputs stay fp64) and outside autocast; memory ``O(chunk x m)``. An empty relation gives a
    zero that keeps the graph.
    """
    if len(rel) == 0:
        return emb.sum() * 0 + protos.sum() * 0
    dtype = torch.promote_types(emb.dtype, torch.float32)
    with torch.autocast(emb.device.type, enabled=False):
        x = emb[rel.pixels].to(dtype)
        p = protos[rel.segments].to(dtype)
        p_own = protos[rel.own].to(dtype)
        chunk = int(chunk) or auto_chunk(p.shape[0])
        return _SegSortFunction.apply(x, p, p_own, rel, float(kappa), chunk).mean()


def location_features(emb: Tensor) -> Tensor:
    """V's features, flattened like ``emb_flat``: ``emb (B, D, H, W)`` -> ``(B * H * W, D + 2)``,
    ``normalize([e; y; x])`` (``segments.with_location``), differentiable. Their prototypes are
    ``segment_prototypes(location_features(emb), sets.pixel_segment, sets.num_batch_segments)``,
    which also serve ``add_affinity`` (detached) as the location-weighted features of A."""
    return with_location(emb).permute(0, 2, 3, 1).reshape(-1, emb.shape[1] + 2)


def spml_loss(emb: Tensor, sets: SegmentSets, lambdas: Mapping[str, float], kappas: Mapping[str, float], *,
              memory_prototypes: Tensor | None = None, remote_prototypes: Tensor | None = None,
              chunk: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_r lambda_r * L_r`` over the relations named in ``lambdas`` (C, O, V, A), and the terms.

    ``emb (B, D, H, W)``: unit norm; ``sets``: from ``build_segment_sets`` on the same grid (with
    ``add_affinity`` for A); ``memory_prototypes (M, D)``: the prototypes of the ``Memory`` given to
    ``build_segment_sets``, in its order. Under data parallelism the Memory starts with the other
    ranks' segments, whose prototypes come as ``remote_prototypes (R, D)`` and stay in the graph
    (gradients return to their ranks); the rest, the memory bank's, are detached. C, O and A compare ``e`` with the batch
    prototypes (plus memory); V compares the with-location vectors ``normalize([e; y; x])`` of pixels
    and of batch prototypes. Each term is averaged over its pixels; a relation that is absent, empty
    or weighted 0 contributes 0. Returns ``(total, {name: detached term})``; CE is not included.
    """
    B, D, H, W = emb.shape
    S = sets.num_batch_segments
    M = len(sets) - S
    emb_flat = emb.permute(0, 2, 3, 1).reshape(-1, D)
    protos = segment_prototypes(emb_flat, sets.pixel_segment, S)
    if M:
        parts = [] if remote_prototypes is None else [remote_prototypes.to(protos)]
        if memory_prototypes is not None:
            parts.append(memory_prototypes.detach().to(protos))
        got = sum(p.shape[0] for p in parts)
        if got != M:
            raise ValueError(f"the segment table has {M} memory segments but {got} remote + memory "
                             f"prototypes were given; expected them in the Memory's order")
        protos = torch.cat([protos, *parts])
    total = emb_flat.sum() * 0
    zero = total.detach().clone()
    terms: dict[str, Tensor] = {}
    for name, weight in lambdas.items():
        rel = sets.relations.get(name)
        if rel is None or weight == 0 or len(rel) == 0:
            terms[name] = zero.clone()
            continue
        if name == "V":
            loc_flat = location_features(emb)
            term = segsort_loss(loc_flat, segment_prototypes(loc_flat, sets.pixel_segment, S), rel,
                                kappas[name], chunk)
        else:
            term = segsort_loss(emb_flat, protos, rel, kappas[name], chunk)
        total = total + weight * term
        terms[name] = term.detach()
    return total, terms
