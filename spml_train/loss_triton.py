"""SegSort+'s sums as fused Triton kernels: the n x m logits never exist in memory.

``loss.py`` computes, per block of pixels, ``E = exp(kappa x p^T - b)`` and masked sums of it, as
several passes over ``(rows, m)`` tensors. Here each program keeps a tile of logits in registers:

* ``_forward``: per pixel ``S_pos = sum_k E_ik [related] [k != own]`` and ``S_all = sum_k E_ik [k != own]``;
* ``_grad_x``: ``sum_k g_ik p_k`` with ``g_ik = E_ik (a_i - c_i [related])`` on the counted set;
* ``_grad_p``: ``sum_i g_ik x_i`` per candidate (a second pass, tiles of candidates).

The relation is given as distinct rows ``R (U, m)`` and each pixel's row index (``loss._patterns``),
the own segment as a column index (-1: not a candidate); every candidate is visible (relations
without groups). Products keep fp32 accuracy, as the torch path: ``tf32x3`` on a GPU, plain
fp32 (``ieee``) in the interpreter.

Used by ``loss.py`` only when asked for (``SPML_FUSED=1``) on CUDA with Triton installed;
``SPML_TRITON_INTERPRET=1`` (with ``TRITON_INTERPRET=1``) runs the same kernels on the CPU for
testing. Status: correct, not yet fast. Measured on an H200 (first version): the loss alone
(262k x 10k) took 1,186 ms against 156 ms for the torch path; its products ran in plain fp32
(no tensor cores) and ``_grad_p`` had only m / 64 programs, each walking every pixel tile. Since
then (not yet measured on a GPU): products as ``tf32x3`` (three TF32 tensor-core products, fp32
accuracy) and ``_grad_p`` split over pixel blocks into partial sums.
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

BLOCK_N, BLOCK_M = 64, 64


def available(x: Tensor) -> bool:
    """Opted in with ``SPML_FUSED=1``, Triton installed, and a CUDA tensor (or the interpreter, for
    tests). Off by default: correct (tested against the dense reference on an H200) but, as written,
    9x slower than the torch path there (BENCHMARKS.md, "GPU check", run 8)."""
    if triton is None or os.environ.get("SPML_FUSED") != "1":
        return False
    return x.is_cuda or os.environ.get("SPML_TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _tile(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, rows, cols, n, m, kappa, D: tl.constexpr,
              PREC: tl.constexpr):
        """E (with the own column and padding zeroed) and the related mask of one tile."""
        d = tl.arange(0, D)
        x = tl.load(x_ptr + rows[:, None] * D + d[None, :], mask=rows[:, None] < n, other=0.0)
        p = tl.load(p_ptr + cols[:, None] * D + d[None, :], mask=cols[:, None] < m, other=0.0)
        b = tl.load(b_ptr + rows, mask=rows < n, other=0.0)
        own = tl.load(own_ptr + rows, mask=rows < n, other=-1)
        u = tl.load(inv_ptr + rows, mask=rows < n, other=0)
        logits = tl.dot(x, tl.trans(p), input_precision=PREC) * kappa - b[:, None]
        counted = (cols[None, :] < m) & (rows[:, None] < n) & (cols[None, :] != own[:, None])
        E = tl.where(counted, tl.exp(logits), 0.0)
        rel = tl.load(r_ptr + u[:, None].to(tl.int64) * m + cols[None, :], mask=counted, other=0) != 0
        return E, rel, x, p

    @triton.jit
    def _forward(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, spos_ptr, sall_ptr, n, m, kappa,
                 D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        s_pos = tl.zeros((BN,), tl.float32)
        s_all = tl.zeros((BN,), tl.float32)
        for c0 in range(0, m, BM):
            cols = c0 + tl.arange(0, BM)
            E, rel, x, p = _tile(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, rows, cols, n, m, kappa, D, PREC)
            s_all += tl.sum(E, 1)
            s_pos += tl.sum(tl.where(rel, E, 0.0), 1)
        tl.store(spos_ptr + rows, s_pos, mask=rows < n)
        tl.store(sall_ptr + rows, s_all, mask=rows < n)

    @triton.jit
    def _grad_x(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, a_ptr, c_ptr, gx_ptr, n, m, kappa,
                D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        a = tl.load(a_ptr + rows, mask=rows < n, other=0.0)
        c = tl.load(c_ptr + rows, mask=rows < n, other=0.0)
        acc = tl.zeros((BN, D), tl.float32)
        for c0 in range(0, m, BM):
            cols = c0 + tl.arange(0, BM)
            E, rel, x, p = _tile(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, rows, cols, n, m, kappa, D, PREC)
            g = E * (a[:, None] - tl.where(rel, c[:, None], 0.0))
            acc += tl.dot(g, p, input_precision=PREC)
        d = tl.arange(0, D)
        tl.store(gx_ptr + rows[:, None] * D + d[None, :], acc * kappa, mask=rows[:, None] < n)

    @triton.jit
    def _grad_p(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, a_ptr, c_ptr, gp_ptr, n, m, kappa, rows_per_split,
                D: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, PREC: tl.constexpr):
        """Partial sums over one split of the pixels (program axis 1), for one candidate tile: the
        splits give the GPU enough programs when the candidates are few; the caller adds them."""
        cols = tl.program_id(0) * BM + tl.arange(0, BM)
        split = tl.program_id(1)
        acc = tl.zeros((BM, D), tl.float32)
        r_start = split * rows_per_split
        for r0 in range(r_start, r_start + rows_per_split, BN):
            rows = r0 + tl.arange(0, BN)
            a = tl.load(a_ptr + rows, mask=rows < n, other=0.0)
            c = tl.load(c_ptr + rows, mask=rows < n, other=0.0)
            E, rel, x, p = _tile(x_ptr, p_ptr, b_ptr, own_ptr, inv_ptr, r_ptr, rows, cols, n, m, kappa, D, PREC)
            g = E * (a[:, None] - tl.where(rel, c[:, None], 0.0))
            acc += tl.dot(tl.trans(g), x, input_precision=PREC)
        d = tl.arange(0, D)
        out = gp_ptr + split.to(tl.int64) * m * D + cols[:, None] * D + d[None, :]
        tl.store(out, acc * kappa, mask=cols[:, None] < m)


def _precision() -> str:
    """fp32-accurate products: three TF32 tensor-core products ("tf32x3") on a GPU; plain fp32
    in the interpreter."""
    return "ieee" if os.environ.get("TRITON_INTERPRET") == "1" else "tf32x3"


def _pad(t: Tensor, D: int) -> Tensor:
    """``(k, d)`` fp32, contiguous, zero-padded to ``D`` columns (a power of two >= 16 for tl.dot)."""
    t = t.float()
    if t.shape[1] < D:
        t = torch.nn.functional.pad(t, (0, D - t.shape[1]))
    return t.contiguous()


def _dim(d: int) -> int:
    return max(16, 1 << (d - 1).bit_length())


def sums(x: Tensor, p: Tensor, b: Tensor, own_col: Tensor, inv: Tensor, R: Tensor, kappa: float):
    """``(S_pos, S_all)``, each ``(n,)``: see the module docstring."""
    n, m, D = x.shape[0], p.shape[0], _dim(x.shape[1])
    s_pos, s_all = x.new_empty(n, dtype=torch.float32), x.new_empty(n, dtype=torch.float32)
    _forward[(triton.cdiv(n, BLOCK_N),)](
        _pad(x, D), _pad(p, D), b.float().contiguous(), own_col.contiguous(), inv.int().contiguous(),
        R.to(torch.int8).contiguous(), s_pos, s_all, n, m, float(kappa), D=D, BN=BLOCK_N, BM=BLOCK_M,
        PREC=_precision())
    return s_pos, s_all


def grads(x: Tensor, p: Tensor, b: Tensor, own_col: Tensor, inv: Tensor, R: Tensor, kappa: float,
          a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(grad_x (n, d), grad_p (m, d))`` of ``sum_ik g_ik l_ik`` with ``g = E (a_i - c_i [related])``
    on the counted set, ``l = kappa x p^T``."""
    n, m, d = x.shape[0], p.shape[0], x.shape[1]
    D = _dim(d)
    xp, pp = _pad(x, D), _pad(p, D)
    args = (xp, pp, b.float().contiguous(), own_col.contiguous(), inv.int().contiguous(), R.to(torch.int8).contiguous(),
            a.float().contiguous(), c.float().contiguous())
    gx = torch.empty(n, D, dtype=torch.float32, device=x.device)
    _grad_x[(triton.cdiv(n, BLOCK_N),)](*args, gx, n, m, float(kappa), D=D, BN=BLOCK_N, BM=BLOCK_M, PREC=_precision())
    col_tiles, row_tiles = triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N)
    splits = max(1, min(64, row_tiles, triton.cdiv(1024, col_tiles)))  # about 1,000 programs or more
    rows_per_split = triton.cdiv(row_tiles, splits) * BLOCK_N
    splits = triton.cdiv(n, rows_per_split)
    gp = torch.empty(splits, m, D, dtype=torch.float32, device=x.device)
    _grad_p[(col_tiles, splits)](*args, gp, n, m, float(kappa), rows_per_split, D=D, BN=BLOCK_N, BM=BLOCK_M,
                                 PREC=_precision())
    return gx[:, :d].to(x.dtype), gp.sum(0)[:, :d].to(p.dtype)
