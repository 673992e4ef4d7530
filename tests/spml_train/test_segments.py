"""Tests of ``spml_train.segments``: batched spherical k-means, prototypes and the memory bank."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from spml_train.segments import MemoryBank, location_grid, segment_prototypes, spherical_kmeans, with_location


def unit_map(B, D, H, W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(B, D, H, W, generator=g), dim=1)


# --------------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------------

def test_location_features_span_minus_half_to_half():
    loc = location_grid(3, 5)
    assert loc[0, 0, 0] == -0.5 and loc[0, -1, 0] == 0.5 and loc[1, 0, -1] == 0.5
    f = with_location(unit_map(2, 4, 3, 5))
    assert f.shape == (2, 6, 3, 5)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2, 3, 5))


def test_grid_start_with_no_iteration():
    emb = unit_map(2, 4, 12, 12)
    ids = spherical_kmeans(emb, torch.ones(2, 12, 12, dtype=torch.bool), grid=3, iters=0)
    cells = torch.arange(3).repeat_interleave(4)
    expected = cells[:, None] * 3 + cells[None, :]
    assert torch.equal(ids, expected.expand(2, 12, 12))


def test_deterministic_and_batched_equals_per_image():
    emb = unit_map(4, 8, 16, 20, seed=1)
    valid = torch.rand(4, 16, 20, generator=torch.Generator().manual_seed(2)) > 0.1
    a = spherical_kmeans(emb, valid)
    assert torch.equal(a, spherical_kmeans(emb, valid))
    loop = torch.cat([spherical_kmeans(emb[b:b + 1], valid[b:b + 1]) for b in range(4)])
    assert torch.equal(a, loop)
    assert a.min() >= -1 and a.max() < 36
    assert len(torch.unique(a[0])) > 10, "clusters should stay spread over the image"


def test_ignored_pixels_are_minus_one_and_take_no_part():
    emb = unit_map(2, 8, 12, 12, seed=3)
    valid = torch.ones(2, 12, 12, dtype=torch.bool)
    valid[:, :, 8:] = False
    ids = spherical_kmeans(emb, valid, grid=4)
    assert torch.all(ids[~valid] == -1) and torch.all(ids[valid] >= 0)
    # changing the embedding under ignored pixels changes nothing
    other = emb.clone()
    other[:, :, :, 8:] = unit_map(2, 8, 12, 4, seed=9)
    assert torch.equal(ids, spherical_kmeans(other, valid, grid=4))


def test_empty_clusters_never_win():
    """Only two grid cells hold valid pixels; a few pixels point opposite to both prototypes, so a
    zero prototype (cosine 0) would beat them (negative cosine) if empty clusters were not masked."""
    H = W = 8
    emb = torch.ones(1, 1, H, W)
    valid = torch.zeros(1, H, W, dtype=torch.bool)
    valid[0, :4, :4] = True           # cell 0 of a 2 x 2 grid
    valid[0, 4:, 4:] = True           # cell 3
    emb[0, 0, 1, 1] = -1.0
    emb[0, 0, 6, 6] = -1.0
    ids = spherical_kmeans(emb, valid, grid=2)
    assert set(ids[valid].tolist()) <= {0, 3}
    assert torch.all(ids[~valid] == -1)


def test_no_autograd_graph():
    emb = unit_map(2, 4, 8, 8).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ids = spherical_kmeans(emb, torch.ones(2, 8, 8, dtype=torch.bool))
    assert ids.dtype == torch.long and ids.grad_fn is None and not ids.requires_grad
    assert saved == []


# --------------------------------------------------------------------------------------------
# prototypes
# --------------------------------------------------------------------------------------------

def test_prototypes_unit_norm_zero_safe_and_differentiable():
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(30, 5, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    segment = torch.randint(-1, 3, (30,), generator=g)      # segment 3 has no member
    protos = segment_prototypes(emb, segment, 4)
    torch.testing.assert_close(protos[:3].norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert torch.all(protos[3] == 0)
    expected = F.normalize(emb[segment == 1].sum(0), dim=0)
    torch.testing.assert_close(protos[1], expected)
    (protos * torch.randn(4, 5, generator=g, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(emb.grad).all()
    assert torch.all(emb.grad[segment == -1] == 0) and emb.grad[segment >= 0].abs().sum() > 0
    assert torch.autograd.gradcheck(lambda e: segment_prototypes(e, segment, 4), (emb.detach().requires_grad_(),))


# --------------------------------------------------------------------------------------------
# memory bank
# --------------------------------------------------------------------------------------------

def push(bank, i, n=3, D=4, C=5):
    bank.push(torch.full((n, D), float(i), requires_grad=True), torch.zeros(n, C, dtype=torch.bool),
              torch.ones(n, C, dtype=torch.bool))


def test_memory_bank_keeps_last_pushes_in_order():
    bank = MemoryBank(2)
    for i in range(4):
        push(bank, i, n=i + 1)
    protos, memory = bank.get()
    assert protos.shape == (3 + 4, 4) and len(memory) == 7 and len(bank) == 7
    assert protos[:3].eq(2).all() and protos[3:].eq(3).all()
    assert not protos.requires_grad
    assert memory.label_set.dtype == torch.bool and memory.tags.all()


def test_memory_bank_zero_iterations_is_always_empty():
    bank = MemoryBank(0, dim=4, num_classes=5)
    assert bank.get()[0].shape == (0, 4)
    push(bank, 1)
    protos, memory = bank.get()
    assert protos.shape == (0, 4) and len(memory) == 0 and memory.label_set.shape == (0, 5)


def test_memory_bank_state_dict_round_trip():
    bank = MemoryBank(2)
    for i in range(3):
        push(bank, i)
    buf = io.BytesIO()
    torch.save(bank.state_dict(), buf)
    buf.seek(0)
    other = MemoryBank(2)
    other.load_state_dict(torch.load(buf))
    (p1, m1), (p2, m2) = bank.get(), other.get()
    assert torch.equal(p1, p2) and torch.equal(m1.label_set, m2.label_set) and torch.equal(m1.tags, m2.tags)
    push(bank, 7)
    push(other, 7)
    assert torch.equal(bank.get()[0], other.get()[0])
