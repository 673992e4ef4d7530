"""SegSort+'s sums as fused Triton kernels: the n x m logits never exist in memory.

``loss.py`` computes, per block of pixels, ``E = exp(kappa x p^T - b)`` and masked sums of it, as
several passes over ``(rows, m)`` tensors. Here each program keeps a tile of logits in registers:

* ``_forward``: per pixel ``S_pos = sum_k E_ik [related] [k != own]`` and ``S_all = sum_k E_ik [k != own]``;
* ``_grad_x``: ``sum_k g_ik p_k`` with ``g_ik = E_ik (a_i - c_i [related])`` on the counted set;
* ``_grad_p``: ``sum_i g_ik x_i`` per candidate (a second pass, tiles of candidates, the pixels
  split into blocks whose partial sums the caller adds: deterministic, no atomics).

The relation is given as distinct rows ``R (U, m)`` and each pixel's row index (``loss._patterns``),
the own segment as a column index (-1: not a candidate); every candidate is visible (relations
without groups). With at most 64 distinct rows (SPML's C and O: one per class or candidate set, one
per tag set) each candidate's column of ``R`` is packed into one int64, loaded once per tile and
tested with a shift; otherwise the kernels gather ``R`` entry by entry.

Products: ``SPML_FUSED_PRECISION`` = ``tf32x3`` (default: three TF32 tensor-core products, fp32
accuracy, as the torch path with TF32 off), ``tf32`` (one product, about 1e-3 relative error in a
logit: faster, less exact) or ``ieee`` (plain fp32, no tensor cores; what the interpreter runs).

Tile shapes: chosen per kernel by ``triton.autotune`` at the first call for each size class (pixel
and candidate counts rounded up to powers of two) among configurations picked offline for
``sm_90`` by their register use and spills (Triton's own ``ptxas``, no GPU needed; BENCHMARKS.md
says how). Different tile shapes sum in different orders, so results may differ in the last bits
between processes that picked different tiles.

Used by ``loss.py`` only when asked for (``SPML_FUSED=1``) on CUDA with Triton installed;
``SPML_TRITON_INTERPRET=1`` (with ``TRITON_INTERPRET=1``) runs the same kernels on the CPU for
testing (one fixed tile shape, no autotuning; Triton 3.6's interpreter needs numpy < 2.4).
Status: correct, speed not yet known. Measured on an H200 (first version): the loss alone
(262k x 10k) took 1,186 ms against 156 ms for the torch path; its products ran in plain fp32
(no tensor cores) and ``_grad_p`` had only m / 64 programs, each walking every pixel tile. Since
then (not yet measured on a GPU): tensor-core products, ``_grad_p`` split over pixel blocks,
loop-invariant loads hoisted, packed relation rows, ``exp2``, and autotuned tiles without spills.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU install: loss.py keeps its torch path
    triton = None

PACKED_ROWS = 64        # distinct relation rows that fit one int64 per candidate
ROW_GRAIN = 128         # the largest BN below: _grad_p's pixel blocks are multiples of it
INTERPRET_TILE = dict(BN=64, BM=32)


def available(x: Tensor) -> bool:
    """Opted in with ``SPML_FUSED=1``, Triton installed, and a CUDA tensor (or the interpreter, for
    tests). Off by default until a GPU run shows it faster than the torch path (BENCHMARKS.md,
    "GPU check": the first version was 9x slower there)."""
    if triton is None or os.environ.get("SPML_FUSED") != "1":
        return False
    return x.is_cuda or os.environ.get("SPML_TRITON_INTERPRET") == "1"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def _precision() -> str:
    if _interpreting():
        return "ieee"
    prec = os.environ.get("SPML_FUSED_PRECISION", "tf32x3")
    if prec not in ("tf32x3", "tf32", "ieee"):
        raise ValueError(f"SPML_FUSED_PRECISION={prec!r}: expected tf32x3, tf32 or ieee")
    return prec


if triton is not None:

    @triton.jit
    def _related(bits_ptr, r_ptr, u, cols, m, counted, PACKED: tl.constexpr):
        """``(BN, BM)`` bool: is candidate ``cols`` related to the pixels whose rows are ``u``."""
        if PACKED:
            word = tl.load(bits_ptr + cols, mask=cols < m, other=0)
            return ((word[None, :] >> u[:, None].to(tl.int64)) & 1) != 0
        return tl.load(r_ptr + u[:, None].to(tl.int64) * m + cols[None, :], mask=counted, other=0) != 0

    @triton.jit
    def _exp_tile(x, p, b2, own, rows, cols, n, m, k2, PREC: tl.constexpr):
        """``E = exp(kappa x.p - b)`` of one tile (as exp2 of log2-scaled logits), zero on the own
        column and the padding, and the counted mask."""
        logits2 = tl.dot(x, tl.trans(p), input_precision=PREC) * k2 - b2[:, None]
        counted = (cols[None, :] < m) & (rows[:, None] < n) & (cols[None, :] != own[:, None])
        return tl.where(counted, tl.math.exp2(logits2), 0.0), counted

    @triton.jit
    def _rows(x_ptr, b_ptr, own_ptr, inv_ptr, rows, n, D: tl.constexpr):
        d = tl.arange(0, D)
        x = tl.load(x_ptr + rows[:, None] * D + d[None, :], mask=rows[:, None] < n, other=0.0)
        b = tl.load(b_ptr + rows, mask=rows < n, other=0.0)
        own = tl.load(own_ptr + rows, mask=rows < n, other=-1)
        u = tl.load(inv_ptr + rows, mask=rows < n, other=0)
        return x, b * 1.4426950408889634, own, u

    @triton.jit
    def _forward(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, bits_ptr, spos_ptr, sall_ptr, n, m, kappa,
                 n_key, m_key, D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr,
                 PACKED: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        x, b2, own, u = _rows(x_ptr, b_ptr, own_ptr, inv_ptr, rows, n, D)
        k2 = kappa * 1.4426950408889634
        d = tl.arange(0, D)
        s_pos = tl.zeros((BN,), tl.float32)
        s_all = tl.zeros((BN,), tl.float32)
        for c0 in range(0, m, BM):
            cols = c0 + tl.arange(0, BM)
            p = tl.load(p_ptr + cols[:, None] * D + d[None, :], mask=cols[:, None] < m, other=0.0)
            E, counted = _exp_tile(x, p, b2, own, rows, cols, n, m, k2, PREC)
            rel = _related(bits_ptr, r_ptr, u, cols, m, counted, PACKED)
            s_all += tl.sum(E, 1)
            s_pos += tl.sum(tl.where(rel, E, 0.0), 1)
        tl.store(spos_ptr + rows, s_pos, mask=rows < n)
        tl.store(sall_ptr + rows, s_all, mask=rows < n)

    @triton.jit
    def _grad_x(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, bits_ptr, a_ptr, c_ptr, gx_ptr, n, m, kappa,
                n_key, m_key, D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr,
                PACKED: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        x, b2, own, u = _rows(x_ptr, b_ptr, own_ptr, inv_ptr, rows, n, D)
        a = tl.load(a_ptr + rows, mask=rows < n, other=0.0)
        c = tl.load(c_ptr + rows, mask=rows < n, other=0.0)
        k2 = kappa * 1.4426950408889634
        d = tl.arange(0, D)
        acc = tl.zeros((BN, D), tl.float32)
        for c0 in range(0, m, BM):
            cols = c0 + tl.arange(0, BM)
            p = tl.load(p_ptr + cols[:, None] * D + d[None, :], mask=cols[:, None] < m, other=0.0)
            E, counted = _exp_tile(x, p, b2, own, rows, cols, n, m, k2, PREC)
            rel = _related(bits_ptr, r_ptr, u, cols, m, counted, PACKED)
            g = E * (a[:, None] - tl.where(rel, c[:, None], 0.0))
            acc += tl.dot(g, p, input_precision=PREC)
        tl.store(gx_ptr + rows[:, None] * D + d[None, :], acc * kappa, mask=rows[:, None] < n)

    @triton.jit
    def _grad_p(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, bits_ptr, a_ptr, c_ptr, gp_ptr, n, m, kappa,
                rows_per_split, n_key, m_key, D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                PREC: tl.constexpr, PACKED: tl.constexpr):
        """Partial sums over one block of pixels (program axis 1), for one candidate tile: the
        blocks give the GPU enough programs when the candidates are few; the caller adds them."""
        cols = tl.program_id(0) * BM + tl.arange(0, BM)
        split = tl.program_id(1)
        d = tl.arange(0, D)
        p = tl.load(p_ptr + cols[:, None] * D + d[None, :], mask=cols[:, None] < m, other=0.0)
        k2 = kappa * 1.4426950408889634
        acc = tl.zeros((BM, D), tl.float32)
        r_start = split * rows_per_split
        for r0 in range(r_start, r_start + rows_per_split, BN):
            rows = r0 + tl.arange(0, BN)
            x, b2, own, u = _rows(x_ptr, b_ptr, own_ptr, inv_ptr, rows, n, D)
            a = tl.load(a_ptr + rows, mask=rows < n, other=0.0)
            c = tl.load(c_ptr + rows, mask=rows < n, other=0.0)
            E, counted = _exp_tile(x, p, b2, own, rows, cols, n, m, k2, PREC)
            rel = _related(bits_ptr, r_ptr, u, cols, m, counted, PACKED)
            g = E * (a[:, None] - tl.where(rel, c[:, None], 0.0))
            acc += tl.dot(tl.trans(g), x, input_precision=PREC)
        out = gp_ptr + split.to(tl.int64) * m * D + cols[:, None] * D + d[None, :]
        tl.store(out, acc * kappa, mask=cols[:, None] < m)

    def _configs(*shapes):
        return [triton.Config({"BN": bn, "BM": bm}, num_warps=w, num_stages=s) for bn, bm, w, s in shapes]

    # (BN, BM, warps, stages): with tf32x3 for sm_90 (Triton 3.6's ptxas) none spills with the packed
    # relation; with the gathered one grad_x's (64, 32, 4) and grad_p's 32-wide 64-row tiles spill
    # 4-72 bytes. 64 x 64 tiles with 4 warps, the second version's, spilled 240-820 bytes (stack
    # frames of 232-568 bytes) in every kernel.
    _KEY = ["n_key", "m_key", "D", "PREC", "PACKED"]
    _TUNED = {
        "forward": triton.autotune(_configs((64, 64, 8, 3), (64, 32, 4, 3), (128, 32, 8, 3), (64, 64, 8, 4)),
                                   key=_KEY)(_forward),
        "grad_x": triton.autotune(_configs((64, 32, 4, 3), (64, 32, 8, 3), (128, 32, 8, 3), (64, 16, 4, 3)),
                                  key=_KEY)(_grad_x),
        "grad_p": triton.autotune(_configs((64, 32, 4, 3), (32, 32, 4, 3), (64, 16, 4, 3), (64, 32, 8, 3)),
                                  key=_KEY)(_grad_p),
    }
    _PLAIN = {"forward": _forward, "grad_x": _grad_x, "grad_p": _grad_p}


def _launch(name: str, grid, *args, **const):
    """The autotuned kernel on a GPU; the plain one with ``INTERPRET_TILE`` in the interpreter."""
    if _interpreting():
        _PLAIN[name][grid(INTERPRET_TILE)](*args, **const, **INTERPRET_TILE)
    else:
        _TUNED[name][grid](*args, **const)


def chosen_tiles() -> dict:
    """The configuration autotuning picked per kernel and size class so far (for the benchmarks)."""
    if triton is None:
        return {}
    return {name: {str(key): str(cfg) for key, cfg in k.cache.items()} for name, k in _TUNED.items()}


def _pad(t: Tensor, D: int) -> Tensor:
    """``(k, d)`` fp32, contiguous, zero-padded to ``D`` columns (a power of two >= 16 for tl.dot)."""
    t = t.float()
    if t.shape[1] < D:
        t = torch.nn.functional.pad(t, (0, D - t.shape[1]))
    return t.contiguous()


def _dim(d: int) -> int:
    return max(16, 1 << (d - 1).bit_length())


def _bucket(k: int) -> int:
    return 1 << max(k - 1, 0).bit_length()


def _relation(R: Tensor) -> tuple[Tensor, Tensor, bool]:
    """``R`` as int8 rows, and packed: ``bits[k] = sum_u R[u, k] << u`` when ``U <= 64``."""
    r8 = R.to(torch.int8).contiguous()
    if R.shape[0] > PACKED_ROWS:
        return r8, r8, False
    shifts = torch.arange(R.shape[0], device=R.device, dtype=torch.int64)
    bits = (R.to(torch.int64) << shifts[:, None]).sum(0)   # distinct powers of two: the sum is an OR
    return r8, bits.contiguous(), True


def _common(x, p, b, own_col, inv, R):
    D = _dim(x.shape[1])
    r8, bits, packed = _relation(R)
    args = (_pad(x, D), _pad(p, D), b.float().contiguous(), own_col.contiguous(), inv.int().contiguous(), r8, bits)
    const = dict(D=D, PREC=_precision(), PACKED=packed)
    return args, const


def sums(x: Tensor, p: Tensor, b: Tensor, own_col: Tensor, inv: Tensor, R: Tensor, kappa: float):
    """``(S_pos, S_all)``, each ``(n,)``: see the module docstring."""
    n, m = x.shape[0], p.shape[0]
    args, const = _common(x, p, b, own_col, inv, R)
    s_pos, s_all = x.new_empty(n, dtype=torch.float32), x.new_empty(n, dtype=torch.float32)
    _launch("forward", lambda meta: (triton.cdiv(n, meta["BN"]),), *args, s_pos, s_all, n, m, float(kappa),
            _bucket(n), _bucket(m), **const)
    return s_pos, s_all


def grads(x: Tensor, p: Tensor, b: Tensor, own_col: Tensor, inv: Tensor, R: Tensor, kappa: float,
          a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(grad_x (n, d), grad_p (m, d))`` of ``sum_ik g_ik l_ik`` with ``g = E (a_i - c_i [related])``
    on the counted set, ``l = kappa x p^T``."""
    n, m, d = x.shape[0], p.shape[0], x.shape[1]
    args, const = _common(x, p, b, own_col, inv, R)
    args = (*args, a.float().contiguous(), c.float().contiguous())
    D = const["D"]
    gx = torch.empty(n, D, dtype=torch.float32, device=x.device)
    _launch("grad_x", lambda meta: (triton.cdiv(n, meta["BN"]),), *args, gx, n, m, float(kappa),
            _bucket(n), _bucket(m), **const)
    # pixel blocks: enough programs (about 1,000 with 32-wide candidate tiles) whatever the tile shape
    grains = triton.cdiv(n, ROW_GRAIN)
    splits = max(1, min(64, grains, triton.cdiv(1024, triton.cdiv(m, 32))))
    rows_per_split = triton.cdiv(grains, splits) * ROW_GRAIN
    splits = triton.cdiv(n, rows_per_split)
    gp = torch.empty(splits, m, D, dtype=torch.float32, device=x.device)
    _launch("grad_p", lambda meta: (triton.cdiv(m, meta["BM"]), splits), *args, gp, n, m, float(kappa),
            rows_per_split, _bucket(n), _bucket(m), **const)
    return gx[:, :d].to(x.dtype), gp.sum(0)[:, :d].to(p.dtype)
