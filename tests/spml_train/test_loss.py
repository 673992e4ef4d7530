"""Tests of ``spml_train.loss``: the chunked SegSort+ against a naive dense reference written from
``SPML.md`` section 4 (full n x m matrices, plain masks, ``-log(num / den)`` with ``exp`` in
float64), in values and gradients, on segment sets built by ``weaklabels.segsets``."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from spml_train.loss import _patterns, location_features, segsort_loss, spml_loss
from spml_train.segments import segment_prototypes, with_location
from weaklabels.segsets import Memory, Relation, add_affinity, build_segment_sets

C, UNL, IGNORE = 4, 254, 255


# --------------------------------------------------------------------------------------------
# naive dense reference
# --------------------------------------------------------------------------------------------

def naive_segsort_loss(emb: torch.Tensor, protos: torch.Tensor, rel: Relation, kappa: float) -> torch.Tensor:
    """SPML.md section 4 verbatim: sim = exp(kappa e.p); num = sum of positive sims (own segment as
    fallback); den = num + sum of negative sims; mean of -log(num / den). Dense, float64."""
    x = emb[rel.pixels].double()
    p = protos.double()
    sim = torch.exp(kappa * x @ p[rel.segments].T)                      # (n, m)
    if rel.pixel_key is not None:
        related = rel.pixel_key[:, None] == rel.segment_key[None, :]
    else:
        related = (rel.pixel_sets()[:, None, :] & rel.segment_set[None, :, :]).any(2)
    if rel.pixel_group is not None:
        visible = rel.pixel_group[:, None] == rel.segment_group[None, :]
    else:
        visible = torch.ones_like(related)
    own = rel.segments[None, :] == rel.own[:, None]
    pos = visible & related & ~own
    neg = visible & ~related & ~own
    own_sim = torch.exp(kappa * (x * p[rel.own]).sum(1))
    num = torch.where(pos.any(1), (sim * pos).sum(1), own_sim)
    den = num + (sim * neg).sum(1)
    return (-torch.log(num / den)).mean()


# --------------------------------------------------------------------------------------------
# fixtures: random small problems through build_segment_sets
# --------------------------------------------------------------------------------------------

def unit(*shape, dim=-1, gen=None, dtype=torch.float32):
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=dim).to(dtype)


def random_problem(seed: int, *, B=3, H=6, W=7, D=8, memory=5, candidates=False):
    """Segment sets of a random batch: classes, unlabelled and ignored pixels, a few clusters and
    regions; image 0 has no foreground tag (O falls back there); optional memory and boxes."""
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, C, (B, H, W), generator=g)
    r = torch.rand(B, H, W, generator=g)
    label[r < 0.35] = UNL
    label[r > 0.9] = IGNORE
    cluster = torch.randint(0, 4, (B, H, W), generator=g)
    region = torch.randint(0, 3, (B, H, W), generator=g)
    tags = torch.rand(B, C, generator=g) < 0.5
    tags[0] = False
    tags[1, 1] = True
    cand = None
    if candidates:
        cand = torch.zeros(B, C, H, W, dtype=torch.bool)
        cand[:, 0, :3, :3] = True
        cand[:, 2, :3, :3] = True
    mem = None
    if memory:
        mem = Memory(torch.rand(memory, C, generator=g) < 0.4, torch.rand(memory, C, generator=g) < 0.4)
    sets = build_segment_sets(cluster, label, region, tags, num_classes=C, unlabelled=UNL, ignore=IGNORE,
                              candidates=cand, memory=mem)
    emb = unit(B, D, H, W, dim=1, gen=g)
    return sets, emb, g


def leaves(sets, emb, g, dtype=torch.float32):
    """Flat pixel embeddings (N, D) and a prototype table (S + M, D) as independent leaves."""
    D = emb.shape[1]
    emb_flat = emb.permute(0, 2, 3, 1).reshape(-1, D).to(dtype).requires_grad_()
    protos = unit(len(sets), D, gen=g, dtype=dtype).requires_grad_()
    return emb_flat, protos


def value_and_grads(fn, emb_flat, protos):
    e, p = emb_flat.detach().clone().requires_grad_(), protos.detach().clone().requires_grad_()
    loss = fn(e, p)
    loss.backward()
    return loss.detach(), e.grad, p.grad


def assert_matches_naive(rel, emb_flat, protos, kappa, chunk, atol):
    ours = value_and_grads(lambda e, p: segsort_loss(e, p, rel, kappa, chunk), emb_flat, protos)
    ref = value_and_grads(lambda e, p: naive_segsort_loss(e, p, rel, kappa), emb_flat.double(), protos.double())
    for a, b, what in zip(ours, ref, ("value", "d/d emb", "d/d protos")):
        torch.testing.assert_close(a.double(), b, atol=atol, rtol=0, msg=lambda m: f"{rel.name} {what}: {m}")


# --------------------------------------------------------------------------------------------
# equality with the dense reference
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["C", "O", "V", "A"])
@pytest.mark.parametrize("chunk", [7, 10_000])
def test_matches_naive_fp32(seed, name, chunk):
    sets, emb, g = random_problem(seed, candidates=seed == 2)
    if name == "A":
        feats = segment_prototypes(location_features(emb), sets.pixel_segment, sets.num_batch_segments)
        add_affinity(sets, feats, threshold=0.0)
    rel = sets.relations[name]
    assert len(rel) > 7, "the problem should be larger than the small chunk"
    emb_flat, protos = leaves(sets, emb, g)
    for kappa in (6.0, 16.0):
        assert_matches_naive(rel, emb_flat, protos, kappa, chunk, atol=1e-5)


@pytest.mark.parametrize("name", ["C", "O", "V"])
def test_matches_naive_fp64_exactly(name):
    sets, emb, g = random_problem(3)
    emb_flat, protos = leaves(sets, emb, g, dtype=torch.float64)
    assert_matches_naive(sets.relations[name], emb_flat, protos, 8.0, 5, atol=1e-11)


def test_problems_cover_fallback_and_untagged_images():
    """The random problems exercise the fallback: O pixels of the untagged image 0 and C pixels
    whose class has no other segment; the result still equals the reference (above)."""
    sets, emb, g = random_problem(0, memory=0)
    o = sets.relations["O"]
    related, visible = o.related()
    pos = related & (o.segments[None, :] != o.own[:, None])
    untagged = o.pixels < 6 * 7   # image 0
    assert untagged.any() and not pos[untagged].any()
    assert pos[~untagged].any(1).any()


def test_fallback_value_by_hand():
    """Two segments, unrelated: the pixel has no positive, num = own sim, den = own + other."""
    e = torch.tensor([[1.0, 0.0]], requires_grad=True)
    p = F.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0]]), dim=1).requires_grad_()
    rel = Relation("X", torch.tensor([0]), torch.tensor([0]), torch.tensor([0, 1]),
                   pixel_key=torch.tensor([0]), segment_key=torch.tensor([0, 1]))
    kappa = 3.0
    loss = segsort_loss(e, p, rel, kappa)
    a, b = kappa * 0.8, kappa * 0.0
    assert loss.item() == pytest.approx(-math.log(math.exp(a) / (math.exp(a) + math.exp(b))), rel=1e-6)
    # the own segment related to the pixel is still not a positive: same loss
    rel.segment_key = torch.tensor([0, 1])
    rel.pixel_key = torch.tensor([0])
    assert segsort_loss(e, p, rel, kappa).item() == pytest.approx(loss.item())


def test_single_segment_gives_zero_loss_and_gradient():
    label = torch.full((1, 4, 4), 1)
    sets = build_segment_sets(torch.zeros(1, 4, 4, dtype=torch.long), label, torch.zeros(1, 4, 4, dtype=torch.long),
                              torch.tensor([[False, True, False, False]]), num_classes=C, unlabelled=UNL,
                              ignore=IGNORE)
    assert len(sets) == 1
    emb = unit(16, 5).requires_grad_()
    protos = unit(1, 5).requires_grad_()
    for name in ("C", "O", "V"):
        loss = segsort_loss(emb, protos, sets.relations[name], 16.0, chunk=3)
        loss.backward()
        assert loss.item() == 0.0
        assert torch.all(emb.grad == 0) and torch.all(protos.grad == 0)


def test_empty_relation_is_zero_and_keeps_graph():
    sets, emb, g = random_problem(0)
    rel = sets.relations["C"]
    empty = Relation("C", rel.pixels[:0], rel.own[:0], rel.segments, pixel_set=rel.pixel_sets()[:0],
                     segment_set=rel.segment_set)
    emb_flat, protos = leaves(sets, emb, g)
    loss = segsort_loss(emb_flat, protos, empty, 6.0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(emb_flat.grad == 0) and torch.all(protos.grad == 0)


# --------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kappa_16_near_parallel_low_precision_inputs(dtype):
    """exp(16) overflows fp16: the loss casts to fp32 and stays in log space."""
    g = torch.Generator().manual_seed(5)
    base = unit(1, 16, gen=g)
    emb = F.normalize(base + 1e-3 * torch.randn(50, 16, generator=g), dim=1).to(dtype)
    protos = F.normalize(base + 1e-3 * torch.randn(12, 16, generator=g), dim=1).to(dtype)
    own = torch.randint(0, 12, (50,), generator=g)
    rel = Relation("O", torch.arange(50), own, torch.arange(12),
                   pixel_key=torch.randint(0, 3, (50,), generator=g), segment_key=torch.arange(12) % 3)
    e, p = emb.clone().requires_grad_(), protos.clone().requires_grad_()
    loss = segsort_loss(e, p, rel, 16.0, chunk=16)
    loss.backward()
    ref = naive_segsort_loss(emb, protos, rel, 16.0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert e.grad.dtype == dtype and torch.isfinite(e.grad.float()).all() and torch.isfinite(p.grad.float()).all()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-5)


def test_large_kappa_stays_finite():
    """kappa = 100: exp(kappa) overflows fp32, the log-space form does not (reference in fp64)."""
    sets, emb, g = random_problem(1)
    emb_flat, protos = leaves(sets, emb, g)
    assert_matches_naive(sets.relations["O"], emb_flat, protos, 100.0, 9, atol=2e-4)


# --------------------------------------------------------------------------------------------
# memory: O(chunk x m), never n x m
# --------------------------------------------------------------------------------------------

def test_autograd_never_keeps_the_dense_matrix():
    n, m, D, K, chunk = 20_000, 3_000, 16, 6, 1_024
    g = torch.Generator().manual_seed(0)
    emb = unit(n, D, gen=g).requires_grad_()
    protos = unit(m, D, gen=g).requires_grad_()
    rel = Relation("O", torch.arange(n), torch.randint(0, m, (n,), generator=g), torch.arange(m),
                   pixel_set=torch.rand(n, K, generator=g) < 0.3, segment_set=torch.rand(m, K, generator=g) < 0.3)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = segsort_loss(emb, protos, rel, 8.0, chunk)
    # what backward needs is saved at forward time: O(n D + m D), nothing of size chunk x m or n x m
    # (the gradients themselves are checked against the dense reference above)
    assert saved and max(saved) < chunk * m * 4
    assert sum(saved) < n * m * 4 / 50, f"saved {sum(saved):,} bytes for n x m = {n * m * 4:,}"
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------------------------
# spml_loss
# --------------------------------------------------------------------------------------------

def test_spml_loss_combines_terms_with_location_for_v():
    sets, emb, g = random_problem(4, memory=6)
    B, D, H, W = emb.shape
    memory_protos = unit(6, D, gen=g)
    emb = emb.clone().requires_grad_()
    lambdas, kappas = {"C": 0.3, "O": 0.5, "V": 0.1, "A": 0.7}, {"C": 6, "O": 12, "V": 16, "A": 12}
    total, terms = spml_loss(emb, sets, lambdas, kappas, memory_prototypes=memory_protos, chunk=11)
    assert set(terms) == {"C", "O", "V", "A"} and terms["A"].item() == 0.0     # A was never added
    emb_flat = emb.detach().permute(0, 2, 3, 1).reshape(-1, D).double()
    protos = torch.cat([segment_prototypes(emb_flat, sets.pixel_segment, sets.num_batch_segments),
                        memory_protos.double()])
    loc = with_location(emb.detach().double()).permute(0, 2, 3, 1).reshape(-1, D + 2)
    torch.testing.assert_close(location_features(emb.detach().double()), loc)
    loc_protos = segment_prototypes(loc, sets.pixel_segment, sets.num_batch_segments)
    ref = {"C": naive_segsort_loss(emb_flat, protos, sets.relations["C"], 6),
           "O": naive_segsort_loss(emb_flat, protos, sets.relations["O"], 12),
           "V": naive_segsort_loss(loc, loc_protos, sets.relations["V"], 16)}
    for name, value in ref.items():
        assert terms[name].item() == pytest.approx(value.item(), abs=1e-5), name
    assert total.item() == pytest.approx(sum(lambdas[k] * ref[k].item() for k in ref), abs=1e-5)
    total.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


def test_spml_loss_gradients_match_dense_reference():
    sets, emb, g = random_problem(5, memory=4)
    D = emb.shape[1]
    memory_protos = unit(4, D, gen=g)
    lambdas, kappas = {"C": 1.0, "O": 0.5, "V": 0.1}, {"C": 6, "O": 8, "V": 16}

    def dense(e):
        ef = e.permute(0, 2, 3, 1).reshape(-1, D)
        protos = torch.cat([segment_prototypes(ef, sets.pixel_segment, sets.num_batch_segments),
                            memory_protos.to(e.dtype)])
        loc = with_location(e).permute(0, 2, 3, 1).reshape(-1, D + 2)
        loc_protos = segment_prototypes(loc, sets.pixel_segment, sets.num_batch_segments)
        return (naive_segsort_loss(ef, protos, sets.relations["C"], 6)
                + 0.5 * naive_segsort_loss(ef, protos, sets.relations["O"], 8)
                + 0.1 * naive_segsort_loss(loc, loc_protos, sets.relations["V"], 16))

    e32 = emb.clone().requires_grad_()
    spml_loss(e32, sets, lambdas, kappas, memory_prototypes=memory_protos, chunk=13)[0].backward()
    e64 = emb.double().requires_grad_()
    dense(e64).backward()
    torch.testing.assert_close(e32.grad.double(), e64.grad, atol=1e-5, rtol=0)


def test_spml_loss_rejects_missing_memory_prototypes():
    sets, emb, _ = random_problem(0, memory=5)
    with pytest.raises(ValueError, match="5 memory segments"):
        spml_loss(emb, sets, {"O": 1.0}, {"O": 8.0})


def test_fast_path_only_where_exp_cannot_underflow():
    from spml_train.loss import _shift

    x, p = unit(10, 8), unit(5, 8)
    assert _shift(x, p, 16.0) is not None                  # SPML's kappas: the one-exp path
    assert _shift(x, p, 100.0) is None                     # exp(-200) underflows fp32: log-sum-exp
    assert _shift(x.double(), p.double(), 100.0) is not None
    assert _shift(x.half(), p.half(), 6.0) is None         # only fp32 / fp64 are computed this way


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ["C", "O", "V"])
def test_cuda_matches_the_dense_reference(name):
    g = torch.Generator().manual_seed(7)
    B, H, W, D = 2, 16, 16, 8
    label = torch.randint(0, C, (B, H, W), generator=g)
    label[torch.rand(B, H, W, generator=g) < 0.4] = UNL
    cluster = torch.randint(0, 6, (B, H, W), generator=g)
    region = torch.randint(0, 4, (B, H, W), generator=g)
    tags = torch.rand(B, C, generator=g) < 0.5
    dev = torch.device("cuda")
    sets = build_segment_sets(cluster.to(dev), label.to(dev), region.to(dev), tags.to(dev), num_classes=C,
                              unlabelled=UNL, ignore=IGNORE)
    rel = sets.relations[name]
    emb = unit(B * H * W, D, gen=g).to(dev)
    protos = unit(len(sets), D, gen=g).to(dev)
    ours = value_and_grads(lambda e, p: segsort_loss(e, p, rel, 12.0, 100), emb, protos)
    ref = value_and_grads(lambda e, p: naive_segsort_loss(e, p, rel, 12.0), emb.double(), protos.double())
    for a, b in zip(ours, ref):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a.double(), b, atol=1e-5, rtol=0)


def test_grouped_relation_is_padded_per_group_and_unsorted_falls_back():
    from spml_train.loss import _Groups

    sets, emb, g = random_problem(4)
    rel = sets.relations["V"]
    groups = _Groups(rel, len(rel))
    assert groups.G == 3                                         # one block per image
    # each padded block holds one image's pixels and that image's segments only
    rows = groups.rows(rel.pixel_group, -1)
    cols = groups.cols(rel.segment_group, -1)
    for b in range(groups.G):
        r, c = rows[b][rows[b] >= 0], cols[b][cols[b] >= 0]
        assert (r == r[0]).all() and (c == r[0]).all()
    assert torch.equal(groups.unpad_rows(groups.rows(rel.own, -1)), rel.own)
    # the same relation with its pixels shuffled: full rows with the visibility mask, same value
    perm = torch.randperm(len(rel), generator=g)
    shuffled = Relation("V", rel.pixels[perm], rel.own[perm], rel.segments, pixel_key=rel.pixel_key[perm],
                        segment_key=rel.segment_key, pixel_group=rel.pixel_group[perm],
                        segment_group=rel.segment_group)
    loc = location_features(emb)
    protos = segment_prototypes(loc, sets.pixel_segment, sets.num_batch_segments)
    torch.testing.assert_close(segsort_loss(loc, protos, shuffled, 16.0), segsort_loss(loc, protos, rel, 16.0))


@pytest.mark.parametrize("path, name", [(p, n) for n in ("C", "O") for p in ("patterns", "masks", "logsumexp")]
                         + [("grouped", "V"), ("logsumexp", "V")])
def test_every_computation_path_matches_naive(path, name, monkeypatch):
    """Distinct relation rows as one matrix product (the default for C and O), explicit masks (more
    than 64 distinct rows), and log-sum-exp (kappa beyond the one-exp range) all give the same loss;
    V (pixels sorted by image) takes the padded per-group path, with or without the one-exp form
    (its masked path, for unsorted pixels: test_grouped_relation_is_padded_per_group_and_unsorted_falls_back)."""
    import spml_train.loss as L

    if path == "masks":
        monkeypatch.setattr(L, "_patterns", lambda *a, **k: None)
    if path == "logsumexp":
        monkeypatch.setattr(L, "_shift", lambda *a, **k: None)
    sets, emb, g = random_problem(5, candidates=True)
    emb_flat, protos = leaves(sets, emb, g)
    assert_matches_naive(sets.relations[name], emb_flat, protos, 12.0, 9, atol=1e-5)


def test_patterns_group_pixels_by_relation_row():
    from spml_train.loss import _patterns

    sets, _, _ = random_problem(6, candidates=True)
    for name in ("C", "O"):
        rel = sets.relations[name]
        inv, R = _patterns(rel, slice(None))
        full = rel.relation()
        assert torch.equal(R[inv], full)   # each pixel's row is its pattern's row
        assert len(R) < len(rel)           # far fewer patterns than pixels
    assert _patterns(sets.relations["O"], slice(None), limit=1) is None


_INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1" and os.environ.get("SPML_TRITON_INTERPRET") == "1"


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() or _INTERPRETER),
                    reason="no CUDA device (or run with TRITON_INTERPRET=1 SPML_TRITON_INTERPRET=1)")
@pytest.mark.parametrize("bits", [8, 5])
def test_fused_kernels_match_the_torch_path(monkeypatch, bits):
    """Random per-pixel sets: 8 set bits give up to 256 distinct relation rows (the kernels gather
    R), 5 at most 32 (R packed into one int64 per candidate); many tiles, ragged edges."""
    import spml_train.loss_triton as LT

    if LT.triton is None:
        pytest.skip("triton is not installed")
    g = torch.Generator().manual_seed(11)
    n, m, D = (5000, 700, 64) if torch.cuda.is_available() else (300, 90, 64)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x = unit(n, D, gen=g).to(dev)
    p = unit(m, D, gen=g).to(dev)
    own = torch.randint(0, m, (n,), generator=g).to(dev)
    rel = Relation("O", torch.arange(n, device=dev), own, torch.arange(m, device=dev),
                   pixel_set=(torch.rand(n, bits, generator=g) < 0.3).to(dev),
                   segment_set=(torch.rand(m, bits, generator=g) < 0.3).to(dev))
    _, R = _patterns(rel, slice(None), limit=4096)
    assert (len(R) > LT.PACKED_ROWS) == (bits == 8)   # both layouts of the relation are exercised
    calls = []
    monkeypatch.setattr(LT, "sums", lambda *a, _f=LT.sums: calls.append(1) or _f(*a))
    monkeypatch.setenv("SPML_FUSED", "1")
    fused = value_and_grads(lambda e, q: segsort_loss(e, q, rel, 12.0), x, p)
    assert calls, "the fused kernels were not used"
    monkeypatch.setenv("SPML_FUSED", "0")
    plain = value_and_grads(lambda e, q: segsort_loss(e, q, rel, 12.0), x, p)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
