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

from collections.abc import Mapping

import torch
from torch import Tensor

from weaklabels.segsets import Relation, SegmentSets

from . import loss_triton

from .segments import segment_prototypes, with_location


def _block(x: Tensor, p: Tensor, rel: Relation, rows: slice, kappa: float, shift: Tensor | None = None):
    """Logits ``(r, m)`` (minus ``shift (r,)`` per row when given, in the same kernel), positives and
    all counted candidates (positives or negatives), both ``(r, m) bool``, for pixel rows ``rows``."""
    if shift is None:
        logits = kappa * (x @ p.T)
    else:
        logits = torch.addmm(-shift[:, None], x, p.T, alpha=kappa)
    counted = rel.segments[None, :] != rel.own[rows, None]
    if rel.pixel_group is not None:  # (rel.related's visibility, without its all-true mask when ungrouped)
        counted &= rel.pixel_group[rows, None] == rel.segment_group[None, :]
    return logits, rel.relation(rows) & counted, counted


def _masked_lse(logits: Tensor, mask: Tensor) -> Tensor:
    """Logsumexp over ``mask`` along the last dimension (-inf where it is empty)."""
    return torch.logsumexp(torch.where(mask, logits, float("-inf")), dim=-1)


# exp(-limit) stays a normal number: fp32's smallest is about exp(-87), fp64's exp(-708)
_EXP_RANGE = {torch.float32: 80.0, torch.float64: 700.0}


def _shift(x: Tensor, p: Tensor, kappa: float) -> Tensor | None:
    """Per-row upper bounds ``(r,)`` of the logits (Cauchy-Schwarz: ``kappa |x_i| max_k |p_k|``) when
    ``exp(logit - bound)`` cannot underflow for any logit, else ``None`` (then log-sum-exp is used)."""
    if p.shape[0] == 0:
        return None
    bound = kappa * x.norm(dim=1) * p.norm(dim=1).max()
    return bound if float(2 * bound.max()) < _EXP_RANGE.get(x.dtype, 0.0) else None


def _num_den(logits: Tensor, pos: Tensor, counted: Tensor, own_logit: Tensor, shift: Tensor | None):
    """Per pixel ``num`` and ``den`` (any leading shape) from a block's logits (already minus
    ``shift`` when given: then they are consumed) and masks over the last dimension."""
    has_pos = pos.any(-1)
    if shift is not None:
        # positives and negatives together are the counted set: with a positive,
        # den = log sum_counted; without, den = logaddexp(own logit, log sum_counted)
        E = logits.exp_().mul_(counted)
        lse_pos = torch.where(pos, E, 0).sum(-1).log_() + shift
        lse_all = E.sum(-1).log_() + shift
        num = torch.where(has_pos, lse_pos, own_logit)
        return num, torch.where(has_pos, lse_all, torch.logaddexp(own_logit, lse_all))
    num = torch.where(has_pos, _masked_lse(logits, pos), own_logit)
    return num, torch.logaddexp(num, _masked_lse(logits, counted & ~pos))


def _grad_logits(logits: Tensor, pos: Tensor, counted: Tensor, num: Tensor, den: Tensor, go: Tensor,
                 shift: Tensor | None) -> Tensor:
    """``d loss / d logit`` times the incoming gradient ``go``: softmax over den's set minus softmax
    over num's set (logits consumed; minus ``shift`` when given)."""
    if shift is not None:
        a_den = (shift - den).exp() * go                   # exp(l - den) = E exp(b - den)
        a_num = (shift - num).exp() * go
        g = logits.exp_().mul_(counted)
        return g.mul_(torch.where(pos, (a_den - a_num)[..., None], a_den[..., None]))
    # masked logits are -inf before exp, so exp never sees a large positive exponent
    inf = float("-inf")
    g = (torch.where(counted, logits, inf) - den[..., None]).exp_()
    g -= (torch.where(pos, logits, inf) - num[..., None]).exp_()
    return g.mul_(go[..., None])


def _patterns(rel: Relation, rows: slice, limit: int = 64):
    """``(inv (r,), R (U, m) bool)``: the block's relation as at most ``limit`` distinct rows ``R``
    (pixels with the same key or the same label / tag set share one) and each pixel's row index;
    ``None`` when there are more. C has a pattern per class or candidate set, O one per tag set."""
    if rel.pixel_key is not None:
        uniq, inv = torch.unique(rel.pixel_key[rows], return_inverse=True)
        if len(uniq) > limit:
            return None
        return inv, uniq[:, None] == rel.segment_key[None, :]
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
    return inv, (usets.float() @ rel.segment_set.float().T) > 0


def _exp_without_own(x: Tensor, p: Tensor, kappa: float, b: Tensor, own_col: Tensor) -> Tensor:
    """``E = exp(kappa x p^T - b)`` ``(r, m)`` with each pixel's own-segment entry (column
    ``own_col``, -1: not a candidate) set to 0, without a data-dependent (synchronising) mask."""
    E = torch.addmm(-b[:, None], x, p.T, alpha=kappa).exp_()
    ar, col = torch.arange(len(x), device=x.device), own_col.clamp(min=0)
    E[ar, col] = E[ar, col] * (own_col < 0)
    return E


def _pattern_sums(E: Tensor, inv: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """Row sums of ``E`` over each pixel's related columns and over all columns: one product (in
    the matmul precision the caller chose: the engine leaves TF32 off)."""
    T = E @ torch.cat([R.T.to(E.dtype), E.new_ones(R.shape[1], 1)], 1)   # (r, U + 1)
    return T.gather(1, inv[:, None])[:, 0], T[:, -1]


class _Groups:
    """Pixels sorted by group (V: by image) and each group's candidates, padded into a batch of
    ``G`` blocks ``(G, r_max, D)`` x ``(G, c_max, D)``: every group against its own candidates in a
    few batched kernels (16 x 16k x 86 at SPML's batch, instead of 262k x 1.4k with a mask).
    Candidates of a group without pixels are seen by no pixel and left out."""

    def __init__(self, rel: Relation, n: int):
        dev = rel.pixel_group.device
        groups, self.row_g, counts = torch.unique_consecutive(rel.pixel_group, return_inverse=True,
                                                              return_counts=True)
        self.G, self.r_max = len(groups), int(counts.max())
        self.row_pos = torch.arange(n, device=dev) - (counts.cumsum(0) - counts)[self.row_g]
        gi = torch.searchsorted(groups, rel.segment_group).clamp(max=self.G - 1)
        seen = groups[gi] == rel.segment_group
        self.order = torch.nonzero(seen)[:, 0]
        self.order = self.order[torch.argsort(gi[self.order], stable=True)]
        self.col_g = gi[self.order]
        c_counts = torch.bincount(self.col_g, minlength=self.G)
        self.c_max = int(c_counts.max()) if len(self.order) else 0
        self.col_pos = torch.arange(len(self.order), device=dev) - (c_counts.cumsum(0) - c_counts)[self.col_g]

    def rows(self, t: Tensor, fill) -> Tensor:
        out = t.new_full((self.G, self.r_max, *t.shape[1:]), fill)
        out[self.row_g, self.row_pos] = t
        return out

    def cols(self, t: Tensor, fill) -> Tensor:
        out = t.new_full((self.G, self.c_max, *t.shape[1:]), fill)
        out[self.col_g, self.col_pos] = t[self.order]
        return out

    def unpad_rows(self, t: Tensor) -> Tensor:
        return t[self.row_g, self.row_pos]

    def blocks(self, x: Tensor, p: Tensor, rel: Relation, kappa: float, shift: Tensor | None, chunk: int):
        """Yield ``(row slice of the padded axis, logits, pos, counted)``, each ``(G, rc, c_max)``."""
        xp, pp = self.rows(x, 0), self.cols(p, 0).transpose(1, 2)
        bp = None if shift is None else self.rows(shift, 0)
        own = self.rows(rel.own, -1)
        seg = self.cols(rel.segments, -1)
        valid = self.cols(torch.ones_like(rel.segments, dtype=torch.bool), False)
        if rel.pixel_key is not None:
            rk, ck = self.rows(rel.pixel_key, -1), self.cols(rel.segment_key, -2)
        else:
            rk, ck = self.rows(rel.pixel_sets().float(), 0), self.cols(rel.segment_set.float(), 0).transpose(1, 2)
        step = max(1, chunk // max(self.G, 1))
        for r0 in range(0, self.r_max, step):
            rs = slice(r0, min(r0 + step, self.r_max))
            if bp is None:
                logits = kappa * torch.bmm(xp[:, rs], pp)
            else:
                logits = torch.baddbmm(-bp[:, rs, None], xp[:, rs], pp, alpha=kappa)
            counted = valid[:, None, :] & (seg[:, None, :] != own[:, rs, None])
            related = rk[:, rs, None] == ck[:, None, :] if rel.pixel_key is not None \
                else torch.bmm(rk[:, rs], ck) > 0
            yield rs, logits, related & counted, counted, xp, pp


class _SegSortFunction(torch.autograd.Function):
    """Per-pixel SegSort+ loss ``(n,)`` from ``x (n, D)``, ``p (m, D)`` (the relation's candidate
    prototypes, in ``rel.segments`` order) and ``p_own (n, D)`` (each pixel's own prototype).

    Fast path (unit vectors, kappa up to 40 in fp32): every logit lies within ``[-b_i, b_i]``, so
    ``E = exp(l - b_i)`` is in ``[exp(-2 b_i), 1]``, neither overflowing nor underflowing. One ``exp``
    per block then gives both log-sums as masked sums (``log sum E + b_i``) and, in backward, both
    softmaxes as ``E`` times a per-row factor, instead of a max / subtract / exp / log pass per mask.
    Otherwise the same quantities come from ``logsumexp`` over ``-inf``-masked logits.

    Three layouts: relations with groups (V) and pixels sorted by group as padded per-group blocks
    (``_Groups``); relations whose rows take few distinct values (C, O) with the sums as one matrix
    product against those rows (``_patterns``, fast path only); otherwise row chunks with masks.
    """

    @staticmethod
    def forward(ctx, x, p, p_own, rel, kappa, chunk):
        n = x.shape[0]
        own_logit = kappa * (x * p_own).sum(1)
        shift = _shift(x, p, kappa)
        g = rel.pixel_group
        groups = _Groups(rel, n) if g is not None and n and not bool((g[1:] < g[:-1]).any()) else None
        ctx.groups, ctx.pats, ctx.lookup, ctx.fused = groups, [], None, None
        if groups is not None:
            num_p = own_logit.new_zeros(groups.G, groups.r_max)
            den_p = torch.zeros_like(num_p)
            ol, sp = groups.rows(own_logit, 0), None if shift is None else groups.rows(shift, 0)
            for rs, logits, pos, counted, _, _ in groups.blocks(x, p, rel, kappa, shift, chunk):
                num_p[:, rs], den_p[:, rs] = _num_den(logits, pos, counted, ol[:, rs],
                                                      None if sp is None else sp[:, rs])
            num, den = groups.unpad_rows(num_p), groups.unpad_rows(den_p)
        else:
            num, den = torch.empty_like(own_logit), torch.empty_like(own_logit)
            if shift is not None and g is None:
                # the own segment's column among the candidates (-1: not one), via a lookup table
                size = int(torch.maximum(rel.segments.max(), rel.own.max())) + 1 if n and len(rel.segments) else 1
                ctx.lookup = torch.full((size,), -1, dtype=torch.long, device=x.device)
                ctx.lookup[rel.segments] = torch.arange(len(rel.segments), device=x.device)
                if loss_triton.available(x) and x.dtype == torch.float32 and n and len(rel.segments):
                    ctx.fused = _patterns(rel, slice(None), limit=4096)
            if ctx.fused is not None:
                # fused kernels (CUDA): the logits live in registers, tile by tile
                inv, R = ctx.fused
                own_col = ctx.lookup[rel.own]
                S_pos, S_all = loss_triton.sums(x, p, shift, own_col, inv, R, kappa)
                own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
                has_pos = (R.sum(1)[inv] - own_related.long()) > 0
                lse_all = S_all.log() + shift
                num = torch.where(has_pos, S_pos.log() + shift, own_logit)
                den = torch.where(has_pos, lse_all, torch.logaddexp(own_logit, lse_all))
                chunk = n  # no chunks below
            # the distinct relation rows of all pixels at once (one host synchronisation, not one per chunk)
            whole = _patterns(rel, slice(None)) if ctx.lookup is not None and ctx.fused is None else None
            for start in range(0, n if ctx.fused is None else 0, chunk):
                rows = slice(start, min(start + chunk, n))
                b = None if shift is None else shift[rows]
                pat = None if whole is None else (whole[0][rows], whole[1])
                ctx.pats.append(pat)
                if pat is not None:
                    # few distinct relation rows: both sums are one matrix product, no (r, m) masks
                    inv, R = pat
                    own_col = ctx.lookup[rel.own[rows]]
                    S_pos, S_all = _pattern_sums(_exp_without_own(x[rows], p, kappa, b, own_col), inv, R)
                    own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
                    has_pos = (R.sum(1)[inv] - own_related.long()) > 0
                    lse_all = S_all.log() + b
                    num[rows] = torch.where(has_pos, S_pos.log() + b, own_logit[rows])
                    den[rows] = torch.where(has_pos, lse_all, torch.logaddexp(own_logit[rows], lse_all))
                    continue
                logits, pos, counted = _block(x[rows], p, rel, rows, kappa, b)
                num[rows], den[rows] = _num_den(logits, pos, counted, own_logit[rows], b)
        ctx.save_for_backward(x, p, p_own, own_logit, num, den)
        ctx.rel, ctx.kappa, ctx.chunk = rel, kappa, chunk
        return den - num

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        x, p, p_own, own_logit, num, den = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            return _SegSortFunction._backward(x, p, p_own, own_logit, num, den, grad_loss, ctx)

    @staticmethod
    def _backward(x, p, p_own, own_logit, num, den, grad_loss, ctx):
        rel, kappa, chunk = ctx.rel, ctx.kappa, ctx.chunk
        n = x.shape[0]
        grad_x, grad_p = torch.empty_like(x), torch.zeros_like(p)
        go_all = grad_loss.to(x.dtype)
        shift = _shift(x, p, kappa)
        has_pos = torch.empty(n, dtype=torch.bool, device=x.device)
        groups = ctx.groups
        if groups is not None:
            gxp = torch.zeros(groups.G, groups.r_max, x.shape[1], dtype=x.dtype, device=x.device)
            gpp = torch.zeros(groups.G, groups.c_max, x.shape[1], dtype=x.dtype, device=x.device)
            hp = torch.zeros(groups.G, groups.r_max, dtype=torch.bool, device=x.device)
            nump, denp, gop = groups.rows(num, 0), groups.rows(den, 0), groups.rows(go_all, 0)
            sp = None if shift is None else groups.rows(shift, 0)
            for rs, logits, pos, counted, xp, pp in groups.blocks(x, p, rel, kappa, shift, chunk):
                hp[:, rs] = pos.any(-1)
                g = _grad_logits(logits, pos, counted, nump[:, rs], denp[:, rs], gop[:, rs],
                                 None if sp is None else sp[:, rs])
                gxp[:, rs] = kappa * torch.bmm(g, pp.transpose(1, 2))
                gpp += kappa * torch.bmm(g.transpose(1, 2), xp[:, rs])
            grad_x.copy_(groups.unpad_rows(gxp))
            grad_p.index_add_(0, groups.order, gpp[groups.col_g, groups.col_pos])
            has_pos = groups.unpad_rows(hp)
        elif ctx.fused is not None:
            inv, R = ctx.fused
            own_col = ctx.lookup[rel.own]
            own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
            has_pos = (R.sum(1)[inv] - own_related.long()) > 0
            a_den = (shift - den).exp() * go_all
            a_num = (shift - num).exp() * go_all
            grad_x, grad_p = loss_triton.grads(x, p, shift, own_col, inv, R, kappa, a_den, a_num)
        else:
            for k, start in enumerate(range(0, n, chunk)):
                rows = slice(start, min(start + chunk, n))
                xc, go = x[rows], go_all[rows]
                b = None if shift is None else shift[rows]
                pat = ctx.pats[k] if ctx.pats else None
                if pat is not None:
                    inv, R = pat
                    own_col = ctx.lookup[rel.own[rows]]
                    own_related = (own_col >= 0) & R[inv, own_col.clamp(min=0)]
                    has_pos[rows] = (R.sum(1)[inv] - own_related.long()) > 0
                    a_den = (b - den[rows]).exp() * go
                    a_num = (b - num[rows]).exp() * go
                    g = _exp_without_own(xc, p, kappa, b, own_col)
                    g *= torch.where(R[inv], (a_den - a_num)[:, None], a_den[:, None])
                else:
                    logits, pos, counted = _block(xc, p, rel, rows, kappa, b)
                    has_pos[rows] = pos.any(1)
                    g = _grad_logits(logits, pos, counted, num[rows], den[rows], go, b)
                grad_x[rows] = kappa * (g @ p)
                grad_p += kappa * (g.T @ xc)
        # the own segment carries gradient only as the fallback numerator
        g_own = torch.where(has_pos, torch.zeros_like(go_all), (own_logit - den).exp() - 1) * go_all
        grad_x += kappa * g_own[:, None] * p_own
        grad_own = kappa * g_own[:, None] * x
        return grad_x, grad_p, grad_own, None, None, None


def auto_chunk(m: int, budget_bytes: int = 2 << 30) -> int:
    """Pixel rows per chunk so that a chunk's working blocks stay within ``budget_bytes``: fp32
    logits and temporaries, a gradient block and bool masks take up to about 20 bytes per entry
    (15 counted in the masked forward, 19 in the log-sum-exp backward). Fewer, larger chunks suit
    a GPU, where each chunk costs some 30 kernel launches."""
    return max(1024, budget_bytes // (20 * max(m, 1)))


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
