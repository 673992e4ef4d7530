"""Fully connected CRF (Krähenbühl & Koltun 2011) in torch, on the CPU or a GPU.

``SPML.md`` section 6 refines pseudo labels with 10 mean-field iterations of a
dense CRF with Potts compatibility: a Gaussian kernel (weight 3, xy std 1) and
a bilateral kernel (weight 4, xy std 67, rgb std 3), unary ``-log p``.

The reference ran ``pydensecrf``, which is unmaintained; its fork
``pydensecrf2`` and ``SimpleCRF`` ship only source distributions (one builds
on Python 3.11, the other does not). This module re-implements the same
algorithm as that C++ code, so nothing needs a compiler and it runs batched on
a GPU: the kernels are applied with a permutohedral lattice (Adams et al.
2010) built the same way (elevation, nearest remainder-0 point, barycentric
weights, splat / blur [1/2 1 1/2] along the d + 1 lattice directions / slice, each a
sparse matrix),
with symmetric normalisation ``D^-1/2 K D^-1/2`` and mean field as in
``DenseCRF::inference``. ``benchmarks/crf.py`` measures the agreement with
``pydensecrf2`` on real VOC images; ``tests/spml_train/pseudo/test_crf.py``
checks it against an exact dense (N x N) mean field on small images.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch


class Lattice:
    """Permutohedral lattice of features ``(N, d)`` (already divided by their standard deviations);
    ``filter(values (N, K))`` applies the Gaussian kernel ``exp(-|f_i - f_j|^2 / 2)`` approximately."""

    def __init__(self, features: torch.Tensor):
        f = features.float()
        N, d = f.shape
        dev = f.device
        self.N, self.d = N, d
        inv_std = math.sqrt(2.0 / 3.0) * (d + 1)
        scale = torch.tensor([inv_std / math.sqrt((i + 1) * (i + 2)) for i in range(d)], device=dev)
        cf = f * scale
        # elevate onto the plane x . 1 = 0 in d + 1 dimensions
        suffix = cf.flip(1).cumsum(1).flip(1)                 # suffix[:, k] = sum_{m >= k} cf[:, m]
        E = torch.empty(N, d + 1, device=dev)
        E[:, 0] = suffix[:, 0]
        i = torch.arange(1, d + 1, device=dev, dtype=torch.float32)
        after = torch.cat([suffix[:, 1:], torch.zeros(N, 1, device=dev)], 1)
        E[:, 1:] = after - i * cf
        # the nearest remainder-0 lattice point and the rank of each coordinate's residual
        v = E / (d + 1)
        up, down = torch.ceil(v) * (d + 1), torch.floor(v) * (d + 1)
        rem0 = torch.where(up - E < E - down, up, down)
        total = torch.round(rem0.sum(1) / (d + 1)).long()
        diff = E - rem0
        idx = torch.arange(d + 1, device=dev)
        later = idx[None, :] > idx[:, None]                   # [i, j]: j after i
        di, dj = diff[:, :, None], diff[:, None, :]
        rank = ((later & (dj > di)) | (~later & (idx[None, :] != idx[:, None]) & (dj >= di))).sum(2)
        rank = rank + total[:, None]
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d + 1, torch.where(high, rank - d - 1, rank))
        rem0 = torch.where(low, rem0 + d + 1, torch.where(high, rem0 - d - 1, rem0))
        # barycentric weights of the d + 1 enclosing simplex vertices
        w = (E - rem0) / (d + 1)
        bary = torch.zeros(N, d + 2, device=dev)
        bary.scatter_add_(1, d - rank, w)
        bary.scatter_add_(1, d - rank + 1, -w)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weights = bary[:, : d + 1]                         # (N, d + 1)
        # vertex keys: rem0 + canonical simplex offsets (the first d coordinates determine a point)
        r = torch.arange(d + 1, device=dev)[:, None]            # remainder
        canon = torch.where(idx[None, :] <= d - r, r, r - (d + 1))   # [remainder, rank]
        keys = rem0[:, None, :d].long() + canon[:, rank[:, :d]].permute(1, 0, 2)  # (N, d+1, d)
        lo = keys.amin((0, 1)) - d - 1
        radix = keys.amax((0, 1)) - lo + d + 2
        if float(torch.log2(radix.double()).sum()) > 62:
            raise ValueError(f"lattice keys of {N} x {d} features do not fit in 64 bits; scale the features down")
        mult = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long, device=dev), radix[:-1]]), 0)
        self._lo, self._mult = lo, mult
        codes = ((keys - lo) * mult).sum(-1)                    # (N, d + 1)
        self.points, self.offset = torch.unique(codes.reshape(-1), return_inverse=True)
        self.offset = self.offset.reshape(N, d + 1)
        M = self.M = len(self.points)
        # blur neighbours along each of the d + 1 lattice directions (index M: absent)
        pkeys = torch.stack([(self.points // mult[k]) % radix[k] for k in range(d)], 1) + lo
        neighbours = []
        for j in range(d + 1):
            n1, n2 = pkeys - 1, pkeys + 1
            if j < d:
                n1[:, j] = pkeys[:, j] + d
                n2[:, j] = pkeys[:, j] - d
            neighbours.append(torch.stack([self._find(n1), self._find(n2)], 1))
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        # splat, each blur and slice as sparse CSR matrices built directly (no coalescing sort): one
        # sparse x dense product per step is 10x faster on the CPU than gathers and scatters
        # (measured, 375 x 500 image, 6 classes)
        flat, w = self.offset.reshape(-1), self.weights.reshape(-1)
        pixel = torch.arange(N, device=dev).repeat_interleave(d + 1)
        self._slice = _csr(torch.arange(0, N * (d + 1) + 1, d + 1, device=dev), flat, w * self.alpha, (N, M))
        order = torch.argsort(flat, stable=True)
        self._splat = _csr(_row_starts(torch.bincount(flat, minlength=M)), pixel[order], w[order], (M, N))
        self._blur = []
        r = torch.arange(M, device=dev)
        for nb in neighbours:
            cols = torch.cat([r[:, None], nb], 1)                         # self, n1, n2 (M: absent)
            vals = torch.tensor([1.0, 0.5, 0.5], device=dev).expand(M, 3)
            ok = cols < M
            cols, idx = torch.sort(torch.where(ok, cols, M + 1), 1)        # absent ones last
            vals = torch.gather(vals, 1, idx)[cols <= M]
            self._blur.append(_csr(_row_starts(ok.sum(1)), cols[cols <= M], vals, (M, M)))

    def _find(self, keys: torch.Tensor) -> torch.Tensor:
        code = ((keys - self._lo) * self._mult).sum(-1)
        pos = torch.searchsorted(self.points, code).clamp(max=self.M - 1)
        return torch.where(self.points[pos] == code, pos, torch.full_like(pos, self.M))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """``values (N, K)`` -> ``(N, K)``: splat, blur [1/2 1 1/2] along each direction, slice."""
        grid = self._splat @ values.float()
        for blur in self._blur:
            grid = blur @ grid
        return self._slice @ grid


def _row_starts(counts: torch.Tensor) -> torch.Tensor:
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _csr(crow: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # sparse CSR is marked beta; products with dense are what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, vals.float(), size)


@dataclass(frozen=True)
class CRFParams:
    """The DeepLab / SPML settings (``SPML.md`` section 6)."""

    iterations: int = 10
    gaussian_weight: float = 3.0
    gaussian_xy: float = 1.0
    bilateral_weight: float = 4.0
    bilateral_xy: float = 67.0
    bilateral_rgb: float = 3.0


def _features(rgb: torch.Tensor, xy: float, srgb: float | None) -> torch.Tensor:
    H, W = rgb.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(H, device=rgb.device, dtype=torch.float32),
                            torch.arange(W, device=rgb.device, dtype=torch.float32), indexing="ij")
    pos = torch.stack([xs, ys], -1).reshape(-1, 2) / xy
    if srgb is None:
        return pos
    return torch.cat([pos, rgb.reshape(-1, 3).float() / srgb], 1)


def dense_crf(rgb: torch.Tensor, probs: torch.Tensor, params: CRFParams = CRFParams(),
              *, min_prob: float = 1e-5) -> torch.Tensor:
    """Mean-field marginals ``(K, H, W)`` of one image: ``rgb (H, W, 3)`` uint8, ``probs (K, H, W)``.

    The unary is ``-log max(p, min_prob)``, as pydensecrf's ``unary_from_softmax``.
    """
    K, H, W = probs.shape
    if tuple(rgb.shape) != (H, W, 3):
        raise ValueError(f"image {tuple(rgb.shape)} does not match probabilities {tuple(probs.shape)}")
    # (K, N) layout: softmax over 6-21 classes along dim 0 is 25x faster than along a short dim 1
    unary = -torch.log(probs.float().clamp(min=min_prob)).reshape(K, -1)
    kernels = []
    for weight, xy, srgb in ((params.gaussian_weight, params.gaussian_xy, None),
                             (params.bilateral_weight, params.bilateral_xy, params.bilateral_rgb)):
        if weight:
            lat = Lattice(_features(rgb, xy, srgb))
            norm = lat.filter(torch.ones(H * W, 1, device=probs.device))[:, 0].clamp(min=1e-20).rsqrt()
            kernels.append((weight, lat, norm))
    Q = torch.softmax(-unary, 0)
    for _ in range(params.iterations):
        energy = -unary
        for weight, lat, norm in kernels:
            energy = energy + weight * norm * lat.filter((Q * norm).T).T
        Q = torch.softmax(energy, 0)
    return Q.reshape(K, H, W)
