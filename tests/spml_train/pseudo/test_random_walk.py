"""Random walk: against a float64 reference written from SPML.md section 6, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spml_train.pseudo.random_walk import random_walk, to_grid, transition


def _reference(scores: np.ndarray, emb: np.ndarray, emb_flip: np.ndarray | None, beta=5.0, power=20.0,
               log2_steps=6) -> np.ndarray:
    """One image, pixel by pixel: affinity, flip average, power, column normalisation, T squared."""
    K, h, w = scores.shape
    n = h * w
    views = [emb] if emb_flip is None else [emb, emb_flip]
    a = np.zeros((n, n))
    for e in views:
        v = e.reshape(e.shape[0], n).astype(np.float64)
        v = v / np.linalg.norm(v, axis=0, keepdims=True)
        for i in range(n):
            for j in range(n):
                a[i, j] += np.exp(beta * (v[:, i] @ v[:, j] - 1)) / len(views)
    a = a ** power
    T = a / a.sum(0, keepdims=True)
    for _ in range(log2_steps):
        T = T @ T
    return (scores.reshape(K, n).astype(np.float64) @ T).reshape(K, h, w)


@pytest.mark.parametrize("flip", [False, True])
def test_matches_the_reference(flip):
    g = torch.Generator().manual_seed(0)
    B, D, K, h, w = 2, 8, 3, 5, 6
    emb = F.normalize(torch.randn(B, D, h, w, generator=g), dim=1)
    emb_f = F.normalize(emb + 0.3 * torch.randn(B, D, h, w, generator=g), dim=1) if flip else None
    scores = torch.rand(B, K, h, w, generator=g)
    out = random_walk(scores, emb, emb_f)
    for b in range(B):
        ref = _reference(scores[b].numpy(), emb[b].numpy(), None if emb_f is None else emb_f[b].numpy())
        np.testing.assert_allclose(out[b].numpy(), ref, rtol=1e-4, atol=1e-6)


def test_transition_is_column_stochastic_so_outputs_are_weighted_means():
    emb = F.normalize(torch.randn(1, 4, 3, 7), dim=1)
    T = transition(emb)
    torch.testing.assert_close(T.sum(1), torch.ones(1, 21))
    # each output pixel is a weighted mean of the input scores: constants stay, ranges never grow
    torch.testing.assert_close(random_walk(torch.full((1, 1, 3, 7), 0.4), emb), torch.full((1, 1, 3, 7), 0.4))
    s = torch.rand(1, 2, 3, 7)
    out = random_walk(s, emb)
    assert (out.amax((2, 3)) <= s.amax((2, 3)) + 1e-6).all() and (out.amin((2, 3)) >= s.amin((2, 3)) - 1e-6).all()


def test_scores_spread_within_a_cluster_not_across():
    # two clusters of pixels with orthogonal embeddings; one seed score in the left cluster
    emb = torch.zeros(1, 2, 4, 4)
    emb[0, 0, :, :2] = 1
    emb[0, 1, :, 2:] = 1
    s = torch.zeros(1, 1, 4, 4)
    s[0, 0, 0, 0] = 1
    out = random_walk(s, emb)[0, 0]
    assert torch.allclose(out[:, :2], torch.full((4, 2), 1 / 8), atol=1e-5)
    assert out[:, 2:].abs().max() < 1e-6


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="does not match"):
        random_walk(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 5, 4))


def test_to_grid_resizes_to_unit_vectors():
    e = to_grid(torch.randn(2, 5, 16, 12), (8, 6))
    assert e.shape == (2, 5, 8, 6)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2, 8, 6))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(3)
    emb = F.normalize(torch.randn(2, 16, 32, 32, generator=g), dim=1)
    scores = torch.rand(2, 21, 32, 32, generator=g)
    torch.backends.cuda.matmul.allow_tf32 = False  # compare fp32 with fp32
    out = random_walk(scores.cuda(), emb.cuda(), emb.flip(-1).cuda())
    torch.testing.assert_close(out.cpu(), random_walk(scores, emb, emb.flip(-1)), atol=1e-4, rtol=1e-4)
