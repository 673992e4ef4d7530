"""Tests of ``weaklabels.segsets``: segments and the positive / negative segment sets of SPML's
relations C, O, V and A, checked against a brute-force reference written from ``SPML.md``
sections 2-4 with plain Python loops over pixels and segments.

Reference conventions (SPML.md):

* a pixel is *ignored* (label == ignore: in nothing), *labelled* (a class 0..C-1), or *unlabelled*
  (label == unlabelled), optionally with a non-empty *candidate set* (then it is labelled by a set);
* a segment is the set of non-ignored pixels of one image sharing (cluster, region, label value,
  candidate set);
* for a relation and a pixel taking part: positives = related candidate segments other than its own
  segment, negatives = unrelated candidate segments; fallback when there is no positive.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weaklabels.segsets import Memory, Relation, add_affinity, build_segment_sets, propagate_labels

IGNORE = 255


# --------------------------------------------------------------------------------------------
# brute-force reference
# --------------------------------------------------------------------------------------------

UNL = "unlabelled"  # the reference's label value for an unlabelled pixel (kept apart from classes)


def ref_segments(cluster, label, region, tags, *, num_classes, unlabelled, ignore, background=0,
                 candidates=None, memory=None):
    """Segment table and pixel -> segment key, by loops. Returns a dict.

    Batch segment keys are ``(image, cluster, region, label value, candidate set)`` tuples (label
    value a class int or ``UNL``; candidate set a frozenset); memory segment keys are
    ``("mem", i)``.
    """
    C = num_classes
    B, H, W = label.shape
    cl, lb, rg, tg = cluster.tolist(), label.tolist(), region.tolist(), tags.tolist()
    cand = candidates.tolist() if candidates is not None else None
    bad = set()
    for b in range(B):
        for y in range(H):
            for x in range(W):
                v = lb[b][y][x]
                if v == ignore or 0 <= v < C or v == unlabelled:
                    continue
                bad.add(v)
    if bad:
        raise ValueError(f"bad label values {sorted(bad)}")

    def fg(row):
        return frozenset(c for c in range(C) if row[c] and c != background)

    img_tags = [fg(tg[b]) for b in range(B)]
    seg = {}  # key -> dict(image, cluster, region, label, label_set, tags, count, region_id)
    order = []
    pixel_key = {}  # flat pixel index -> key
    for b in range(B):
        for y in range(H):
            for x in range(W):
                v = lb[b][y][x]
                if v == ignore:
                    continue
                p = (b * H + y) * W + x
                if 0 <= v < C:
                    lv, cs = v, frozenset()
                else:
                    lv = UNL
                    cs = frozenset(c for c in range(C) if cand is not None and cand[b][c][y][x])
                key = (b, cl[b][y][x], rg[b][y][x], lv, cs)
                if key not in seg:
                    seg[key] = dict(image=b, cluster=cl[b][y][x], region=rg[b][y][x],
                                    label=(lv if lv != UNL else -1),
                                    label_set=(frozenset([lv]) if lv != UNL else cs),
                                    tags=img_tags[b], count=0)
                    order.append(key)
                seg[key]["count"] += 1
                pixel_key[p] = key
    batch = list(order)
    if memory is not None:
        msets, mtags = memory.label_set.tolist(), memory.tags.tolist()
        for i in range(len(msets)):
            ls = frozenset(c for c in range(C) if msets[i][c])
            key = ("mem", i)
            seg[key] = dict(image=-1, cluster=-1, region=-1,
                            label=(next(iter(ls)) if len(ls) == 1 else -1),
                            label_set=ls, tags=fg(mtags[i]), count=0)
            order.append(key)
    return dict(seg=seg, order=order, batch=batch, pixel_key=pixel_key, img_tags=img_tags)


def _ref_relation(pixel_key, candidates_of, related, takes_part):
    """{pixel: (positives, negatives, fallback)} by loops, per SPML.md section 4."""
    out = {}
    for p, own in pixel_key.items():
        if not takes_part(p, own):
            continue
        pos, neg = set(), set()
        for k in candidates_of(p, own):
            if related(p, own, k):
                if k != own:
                    pos.add(k)
            else:
                neg.add(k)
        out[p] = (frozenset(pos), frozenset(neg), not pos)
    return out


def ref_relations(ref, features=None, threshold=0.95):
    """Reference C, O, V (and A when ``features``: key -> vector) per pixel."""
    seg, order, batch, pk, img_tags = ref["seg"], ref["order"], ref["batch"], ref["pixel_key"], ref["img_tags"]
    out = {}
    labelled_segs = [k for k in order if seg[k]["label_set"]]
    out["C"] = _ref_relation(
        pk, lambda p, own: labelled_segs,
        lambda p, own, k: bool(seg[own]["label_set"] & seg[k]["label_set"]),
        lambda p, own: bool(seg[own]["label_set"]))
    out["O"] = _ref_relation(
        pk, lambda p, own: order,
        lambda p, own, k: bool(img_tags[seg[own]["image"]] & seg[k]["tags"]),
        lambda p, own: True)
    out["V"] = _ref_relation(
        pk, lambda p, own: [k for k in batch if seg[k]["image"] == seg[own]["image"]],
        lambda p, own, k: seg[k]["region"] == seg[own]["region"],
        lambda p, own: True)
    if features is not None:
        prop = ref_propagate(ref, features, threshold)
        if prop is None:
            out["A"] = None  # an ambiguous tie or a cosine at the threshold: not compared
        else:
            a_segs = [k for k in batch if prop[k]]
            out["A"] = _ref_relation(
                pk, lambda p, own: a_segs,
                lambda p, own, k: bool(prop[own] & prop[k]),
                lambda p, own: bool(prop[own]))
    return out


def ref_propagate(ref, features, threshold, eps=1e-5):
    """Propagated label set per batch segment key, or None when float noise could decide it."""
    seg, batch = ref["seg"], ref["batch"]
    prop = {}
    for k in batch:
        if seg[k]["label_set"]:
            prop[k] = seg[k]["label_set"]
            continue
        scored = []
        for j in batch:
            if seg[j]["image"] == seg[k]["image"] and seg[j]["label_set"]:
                cos = sum(float(a) * float(b) for a, b in zip(features[k], features[j]))
                scored.append((cos, seg[j]["label_set"]))
        if not scored:
            prop[k] = frozenset()
            continue
        best = max(c for c, _ in scored)
        near = {s for c, s in scored if c >= best - eps}
        if abs(best - threshold) < eps or len(near) > 1:
            return None
        prop[k] = next(iter(near)) if best >= threshold else frozenset()
    return prop


# --------------------------------------------------------------------------------------------
# comparison with the fast construction
# --------------------------------------------------------------------------------------------

def fast_relation_sets(rel: Relation):
    """{pixel: (positives, negatives, fallback, own)} from ``Relation.related`` over all rows."""
    n = len(rel)
    assert rel.pixels.shape == rel.own.shape == (n,)
    related, visible = rel.related()
    assert related.shape == visible.shape == (n, rel.segments.numel())
    assert not (related & ~visible).any(), "related must be a subset of visible"
    segs = rel.segments.tolist()
    out = {}
    pixels, owns = rel.pixels.tolist(), rel.own.tolist()
    for i in range(n):
        r, v = related[i].tolist(), visible[i].tolist()
        own = owns[i]
        assert any(v[j] for j in range(len(segs)) if segs[j] == own), f"{rel.name}: own segment not visible"
        pos = frozenset(segs[j] for j in range(len(segs)) if r[j] and segs[j] != own)
        neg = frozenset(segs[j] for j in range(len(segs)) if v[j] and not r[j])
        assert pixels[i] not in out, f"{rel.name}: pixel {pixels[i]} listed twice"
        out[pixels[i]] = (pos, neg, not pos, own)
    return out


def check_against_reference(cluster, label, region, tags, *, num_classes, unlabelled, ignore,
                            background=0, candidates=None, memory=None, features_seed=None,
                            feature_dim=2, threshold=0.95):
    kw = dict(num_classes=num_classes, unlabelled=unlabelled, ignore=ignore, background=background,
              candidates=candidates, memory=memory)
    ref = ref_segments(cluster, label, region, tags, **kw)
    sets = build_segment_sets(cluster, label, region, tags, **kw)
    seg, batch = ref["seg"], ref["batch"]
    B, H, W = label.shape
    C = num_classes
    M = 0 if memory is None else len(memory)

    # ---- partition: pixel_segment vs the reference keys, one-to-one
    ps = sets.pixel_segment.tolist()
    assert len(ps) == B * H * W
    S = sets.num_batch_segments
    assert S == len(batch)
    assert len(sets) == S + M
    key_of = {}  # fast segment id -> reference key
    for p in range(B * H * W):
        if p not in ref["pixel_key"]:
            assert ps[p] == -1, f"ignored pixel {p} has segment {ps[p]}"
            continue
        k = ref["pixel_key"][p]
        assert 0 <= ps[p] < S
        assert key_of.setdefault(ps[p], k) == k, f"segment {ps[p]} mixes {key_of[ps[p]]} and {k}"
    assert len(key_of) == S and len(set(key_of.values())) == S, "segment ids not one-to-one with keys"
    for i in range(M):
        key_of[S + i] = ("mem", i)
    id_of = {k: i for i, k in key_of.items()}

    # ---- segment table
    img, clu, reg = sets.image.tolist(), sets.cluster.tolist(), sets.region.tolist()
    lab, cnt = sets.label.tolist(), sets.count.tolist()
    ls, tg = sets.label_set.tolist(), sets.tags.tolist()
    for i in range(S + M):
        r = seg[key_of[i]]
        assert img[i] == r["image"] and clu[i] == r["cluster"] and reg[i] == r["region"], (i, r)
        assert lab[i] == r["label"], (i, lab[i], r)
        assert frozenset(c for c in range(C) if ls[i][c]) == r["label_set"], (i, ls[i], r)
        assert frozenset(c for c in range(C) if tg[i][c]) == r["tags"], (i, tg[i], r)
        assert cnt[i] == r["count"], (i, cnt[i], r)
    assert sum(cnt) == len(ref["pixel_key"])

    # ---- relations
    features = None
    if features_seed is not None:
        g = torch.Generator().manual_seed(features_seed)
        f = torch.nn.functional.normalize(torch.randn(S, feature_dim, generator=g), dim=1) if S else \
            torch.zeros(0, feature_dim)
        features = {key_of[i]: f[i].tolist() for i in range(S)}
        add_affinity(sets, f, threshold)
    expected = ref_relations(ref, features, threshold)
    for name, exp in expected.items():
        if exp is None:
            continue
        rel = sets.relations[name]
        got = fast_relation_sets(rel)
        segs = set(rel.segments.tolist())
        assert set(got) == set(exp), (f"{name}: pixels differ: only fast {sorted(set(got) - set(exp))[:10]}, "
                                      f"only ref {sorted(set(exp) - set(got))[:10]}")
        for p, (pos, neg, fb) in exp.items():
            gpos, gneg, gfb, gown = got[p]
            assert gown == id_of[ref["pixel_key"][p]], (name, p)
            assert {key_of[j] for j in gpos} == pos, (name, p, {key_of[j] for j in gpos}, pos)
            assert {key_of[j] for j in gneg} == neg, (name, p, {key_of[j] for j in gneg}, neg)
            assert gfb == fb
            # the fallback needs the own segment's prototype: it must be a candidate
            assert gown in segs, (name, p)
    return sets, ref, expected


# --------------------------------------------------------------------------------------------
# hypothesis strategies
# --------------------------------------------------------------------------------------------

@st.composite
def batches(draw):
    B = draw(st.integers(1, 3))
    H = draw(st.integers(1, 6))
    W = draw(st.integers(1, 6))
    C = draw(st.integers(2, 5))
    unlabelled = draw(st.sampled_from([C, C + 1, 254, -1]))
    ignore = draw(st.sampled_from([IGNORE, -100]))
    n_cl = draw(st.integers(1, 3))
    n_rg = draw(st.integers(1, 3))
    n = B * H * W
    cluster = torch.tensor(draw(st.lists(st.integers(0, n_cl - 1), min_size=n, max_size=n))).view(B, H, W)
    region = torch.tensor(draw(st.lists(st.integers(0, n_rg - 1), min_size=n, max_size=n))).view(B, H, W)
    values = list(range(C)) + [unlabelled] * 2 + [ignore]
    label = torch.tensor(draw(st.lists(st.sampled_from(values), min_size=n, max_size=n))).view(B, H, W)
    tags = torch.tensor(draw(st.lists(st.booleans(), min_size=B * C, max_size=B * C))).view(B, C)
    candidates = None
    if draw(st.booleans()):
        # random bits everywhere (also on labelled / ignored pixels: they must be dropped there),
        # sparse enough that many unlabelled pixels keep an empty set
        bits = draw(st.lists(st.sampled_from([False, False, False, True]), min_size=n * C, max_size=n * C))
        candidates = torch.tensor(bits).view(B, H, W, C).permute(0, 3, 1, 2).contiguous()
    memory = None
    mode = draw(st.sampled_from(["none", "empty", "some"]))
    if mode == "empty":
        memory = Memory(torch.zeros(0, C, dtype=torch.bool), torch.zeros(0, C, dtype=torch.bool))
    elif mode == "some":
        M = draw(st.integers(1, 4))
        msets = torch.tensor(draw(st.lists(st.booleans(), min_size=M * C, max_size=M * C))).view(M, C)
        mtags = torch.tensor(draw(st.lists(st.booleans(), min_size=M * C, max_size=M * C))).view(M, C)
        memory = Memory(msets, mtags)
    background = draw(st.sampled_from([0, 0, None, C - 1]))
    return dict(cluster=cluster, label=label, region=region, tags=tags, num_classes=C,
                unlabelled=unlabelled, ignore=ignore, background=background,
                candidates=candidates, memory=memory)


HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(batches(), st.integers(0, 2 ** 31 - 1), st.sampled_from([-1.0, 0.0, 0.5, 0.9, 0.95, 1.5]),
       st.sampled_from([2, 3]))
def test_matches_brute_force_reference(case, seed, threshold, dim):
    check_against_reference(**case, features_seed=seed, feature_dim=dim, threshold=threshold)


@HYP
@given(batches())
def test_related_chunks_match_full_block(case):
    """``Relation.related`` on a chunk (slice or index tensor) is the same rows of the full block."""
    sets = build_segment_sets(**{k: v for k, v in case.items()})
    for rel in sets.relations.values():
        full_r, full_v = rel.related()
        n = len(rel)
        for lo in range(0, n, 7):
            r, v = rel.related(slice(lo, lo + 7))
            assert torch.equal(r, full_r[lo:lo + 7]) and torch.equal(v, full_v[lo:lo + 7])
        idx = torch.arange(n - 1, -1, -2)
        r, v = rel.related(idx)
        assert torch.equal(r, full_r[idx]) and torch.equal(v, full_v[idx])


# --------------------------------------------------------------------------------------------
# explicit cases
# --------------------------------------------------------------------------------------------

def _t(x):
    return torch.tensor(x, dtype=torch.long)


def _case(label, cluster=None, region=None, tags=None, C=3, **kw):
    label = _t(label)
    if label.dim() == 2:
        label = label[None]
    B = label.shape[0]
    cluster = torch.zeros_like(label) if cluster is None else _t(cluster).view_as(label)
    region = torch.zeros_like(label) if region is None else _t(region).view_as(label)
    tags = torch.zeros(B, C, dtype=torch.bool) if tags is None else torch.tensor(tags, dtype=torch.bool)
    return dict(cluster=cluster, label=label, region=region, tags=tags, num_classes=C,
                unlabelled=kw.pop("unlabelled", C + 1), ignore=kw.pop("ignore", IGNORE), **kw)


def test_no_labelled_pixel_at_all():
    U = 4
    case = _case([[[U, U], [U, U]], [[U, IGNORE], [U, U]]], cluster=[[[0, 1], [0, 1]], [[0, 0], [1, 1]]],
                 tags=[[1, 1, 0], [0, 0, 1]])
    sets, ref, exp = check_against_reference(**case, features_seed=3, threshold=0.0)
    assert len(sets.relations["C"]) == 0 and sets.relations["C"].segments.numel() == 0
    assert len(sets.relations["A"]) == 0
    assert len(sets.relations["O"]) == 7 and len(sets.relations["V"]) == 7
    r, v = sets.relations["C"].related()
    assert r.shape == (0, 0)
    assert not propagate_labels(sets, torch.ones(len(sets), 2)).any()


def test_images_without_foreground_tags_fall_back():
    # image 0: only background tagged (cleared) -> no positive, every segment a negative
    # image 1: tag 2
    case = _case([[[0, 1], [4, 4]], [[2, 4], [4, 0]]], cluster=[[[0, 1], [0, 1]], [[0, 1], [0, 1]]],
                 tags=[[1, 0, 0], [0, 0, 1]])
    sets, ref, exp = check_against_reference(**case)
    O = exp["O"]
    for p in range(4):
        pos, neg, fb = O[p]
        assert fb and not pos and neg == frozenset(ref["order"])
    for p in range(4, 8):
        pos, neg, fb = O[p]
        assert {ref["seg"][k]["image"] for k in pos} <= {1}
        assert {ref["seg"][k]["image"] for k in neg} == {0}


def test_single_segment_images():
    case = _case([[[1, 1], [1, 1]], [[4, 4], [4, 4]]], tags=[[0, 1, 0], [0, 1, 1]])
    sets, ref, exp = check_against_reference(**case, features_seed=1, threshold=-1.0)
    assert sets.num_batch_segments == 2
    # V: each image has one segment -> every pixel falls back, no negative
    for p, (pos, neg, fb) in exp["V"].items():
        assert fb and not pos and not neg
    # O: the images share tag 1 -> each pixel's positive is the other image's segment
    for p, (pos, neg, fb) in exp["O"].items():
        assert len(pos) == 1 and not fb and not neg
    # A: the unlabelled image has no labelled segment of its own: nothing is propagated across images
    prop = propagate_labels(sets, torch.nn.functional.normalize(torch.ones(2, 2), dim=1), -1.0)
    assert prop.tolist() == [[False, True, False], [False, False, False]]


def test_propagation_accepts_similarity_equal_to_threshold_and_stays_in_image():
    # image 0: class 1 | unlabelled | class 2 (three clusters); image 1: unlabelled only
    U = 4
    case = _case([[[1, U, 2]], [[U, U, U]]], cluster=[[[0, 1, 2]], [[0, 0, 0]]], tags=[[0, 1, 1], [0, 1, 0]])
    sets = build_segment_sets(**case)
    assert sets.num_batch_segments == 4
    key = {(int(sets.image[i]), int(sets.cluster[i])): i for i in range(4)}
    f = torch.zeros(4, 2)
    f[key[0, 0]] = torch.tensor([1.0, 0.0])
    f[key[0, 1]] = torch.tensor([1.0, 0.0])   # cosine exactly 1.0 with the class-1 segment
    f[key[0, 2]] = torch.tensor([0.0, 1.0])
    f[key[1, 0]] = torch.tensor([1.0, 0.0])   # same feature, other image: never propagated
    prop = propagate_labels(sets, f, threshold=1.0)
    assert prop[key[0, 1]].tolist() == [False, True, False]
    assert not prop[key[1, 0]].any()
    prop = propagate_labels(sets, f, threshold=1.5)
    assert not prop[key[0, 1]].any()
    rel = add_affinity(sets, f, threshold=1.0)
    assert sorted(rel.segments.tolist()) == sorted([key[0, 0], key[0, 1], key[0, 2]])
    assert rel.pixels.tolist() == [0, 1, 2]  # the unlabelled middle pixel took class 1 by affinity
    r, v = rel.related()
    cols = rel.segments.tolist()
    assert r[0, cols.index(key[0, 1])] and not r[0, cols.index(key[0, 2])]


def test_all_ignore_image_and_all_ignore_batch():
    case = _case([[[IGNORE, IGNORE], [IGNORE, IGNORE]], [[0, 4], [2, 2]]], tags=[[0, 1, 1], [0, 0, 1]],
                 memory=Memory(_t([[1, 0, 0], [0, 0, 0]]).bool(), _t([[0, 1, 0], [0, 0, 1]]).bool()))
    sets, ref, exp = check_against_reference(**case, features_seed=0)
    assert (sets.pixel_segment[:4] == -1).all()
    assert not (sets.image[: sets.num_batch_segments] == 0).any()

    allign = _case(torch.full((2, 3, 2), IGNORE).tolist(), tags=[[1, 1, 1], [0, 1, 0]],
                   memory=Memory(_t([[0, 1, 0]]).bool(), _t([[0, 1, 0]]).bool()))
    sets, ref, exp = check_against_reference(**allign, features_seed=0)
    assert sets.num_batch_segments == 0 and len(sets) == 1
    assert (sets.pixel_segment == -1).all()
    for rel in sets.relations.values():
        assert len(rel) == 0
        r, v = rel.related()
        assert r.shape == (0, rel.segments.numel())

    no_memory = dict(allign, memory=None)
    sets, _, _ = check_against_reference(**no_memory, features_seed=0)
    assert len(sets) == 0 and sets.label_set.shape == (0, 3) and sets.tags.shape == (0, 3)


def test_segments_split_by_regions():
    # one cluster, one class, two regions -> two segments; V: the other segment is a negative
    case = _case([[1, 1, 1, 1]], region=[[0, 0, 1, 1]], tags=[[0, 1, 0]])
    sets, ref, exp = check_against_reference(**case)
    assert sets.num_batch_segments == 2
    assert sorted(sets.region.tolist()) == [0, 1]
    for p, (pos, neg, fb) in exp["V"].items():
        assert fb and not pos and len(neg) == 1
    for p, (pos, neg, fb) in exp["C"].items():
        assert len(pos) == 1 and not neg
    # same region, two clusters -> V positives
    case = _case([[1, 1, 1, 1]], cluster=[[0, 1, 0, 1]], region=[[0, 0, 0, 0]], tags=[[0, 1, 0]])
    sets, ref, exp = check_against_reference(**case)
    for p, (pos, neg, fb) in exp["V"].items():
        assert len(pos) == 1 and not neg and not fb


def test_region_ids_compare_within_an_image_only():
    # the same region id in two images is not a V relation (V candidates are the image's segments)
    case = _case([[[1, 1]], [[1, 1]]], cluster=[[[0, 1]], [[0, 1]]], region=[[[5, 5]], [[5, 5]]],
                 tags=[[0, 1, 0], [0, 1, 0]])
    sets, ref, exp = check_against_reference(**case)
    for p, (pos, neg, fb) in exp["V"].items():
        assert len(pos) == 1 and not neg
        assert {ref["seg"][k]["image"] for k in pos} == {p // 2}


def test_unlabelled_and_class_and_candidates_are_separate_segments():
    # one cluster / region: class 2, plain unlabelled, candidate {2}, candidate {0, 2}
    C, U = 3, 4
    label = [[2, U, U, U, U]]
    cand = torch.zeros(1, C, 1, 5, dtype=torch.bool)
    cand[0, 2, 0, 2] = True
    cand[0, [0, 2], 0, 3] = True
    cand[0, [0, 2], 0, 4] = True
    cand[0, 1, 0, 0] = True  # on a labelled pixel: dropped
    case = _case(label, C=C, candidates=cand, tags=[[0, 0, 1]])
    sets, ref, exp = check_against_reference(**case, features_seed=5)
    assert sets.num_batch_segments == 4
    assert sorted(sets.count.tolist()) == [1, 1, 1, 2]
    assert set(exp["C"]) == {0, 2, 3, 4}  # the plain unlabelled pixel is not in C
    assert set(exp["O"]) == set(exp["V"]) == {0, 1, 2, 3, 4}
    # the {0, 2} pixels: own segment removed, class 2 and {2} are positives
    pos, neg, fb = exp["C"][3]
    assert len(pos) == 2 and not neg


def test_memory_segments():
    C, U = 3, 4
    memory = Memory(label_set=_t([[0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 1]]).bool(),
                    tags=_t([[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]]).bool())
    case = _case([[[1, U], [2, 0]]], cluster=[[[0, 1], [2, 3]]], tags=[[1, 1, 0]], C=C, memory=memory)
    sets, ref, exp = check_against_reference(**case, features_seed=2, threshold=0.0)
    S = sets.num_batch_segments
    assert S == 4 and len(sets) == 8
    assert sets.image[S:].tolist() == [-1] * 4 and sets.count[S:].tolist() == [0] * 4
    assert sets.label[S:].tolist() == [1, -1, -1, 2]
    assert sets.tags[S:].tolist() == [[False, True, False], [False, False, True], [False] * 3, [False] * 3]
    # C candidates: labelled batch segments + memory 0, 2, 3 (memory 1 is unlabelled)
    assert sorted(sets.relations["C"].segments.tolist()) == sorted(
        [i for i in range(S) if sets.label_set[i].any()] + [S, S + 2, S + 3])
    # O sees all memory segments, V and A none
    assert set(range(S, S + 4)) <= set(sets.relations["O"].segments.tolist())
    assert max(sets.relations["V"].segments.tolist()) < S
    assert max(sets.relations["A"].segments.tolist()) < S
    # pixel 0 (class 1): memory 0 is a positive, memory 2 / 3 negatives
    pos, neg, fb = exp["C"][0]
    assert ("mem", 0) in pos and {("mem", 2), ("mem", 3)} <= neg


def test_background_only_tags_are_cleared():
    case = _case([[[0, 0], [4, 4]], [[0, 4], [4, 0]]], cluster=[[[0, 0], [1, 1]], [[0, 1], [1, 0]]],
                 tags=[[1, 0, 0], [1, 0, 0]],
                 memory=Memory(_t([[1, 0, 0]]).bool(), _t([[1, 0, 0]]).bool()))
    sets, ref, exp = check_against_reference(**case)
    assert not sets.tags.any()
    r, v = sets.relations["O"].related()
    assert not r.any()
    for p, (pos, neg, fb) in exp["O"].items():
        assert fb and not pos and len(neg) == len(sets)
    # the caller's tags are not modified
    assert case["tags"][:, 0].all()


def test_background_none_keeps_every_tag():
    case = _case([[[0, 0], [4, 4]], [[0, 4], [4, 0]]], cluster=[[[0, 0], [1, 1]], [[0, 1], [1, 0]]],
                 tags=[[1, 0, 0], [1, 0, 0]], background=None,
                 memory=Memory(_t([[1, 0, 0]]).bool(), _t([[1, 0, 0]]).bool()))
    sets, ref, exp = check_against_reference(**case)
    assert sets.tags[:, 0].all()
    for p, (pos, neg, fb) in exp["O"].items():
        assert not fb and not neg and len(pos) == len(sets) - 1


def test_custom_background_index():
    case = _case([[[0, 2], [4, 4]]], cluster=[[[0, 1], [0, 1]]], tags=[[1, 0, 1]], background=2)
    sets, ref, exp = check_against_reference(**case)
    assert sets.tags.tolist() == [[True, False, False]] * sets.num_batch_segments


def test_label_dtypes_and_negative_cluster_ids():
    # uint8 labels (PNG-style), int32 clusters with negative ids
    label = torch.tensor([[[0, 1, 254], [255, 2, 254]]], dtype=torch.uint8)
    cluster = torch.tensor([[[-3, -3, 7], [7, -3, 7]]], dtype=torch.int32)
    region = torch.tensor([[[0, 1, 1], [0, 0, 1]]], dtype=torch.int32)
    tags = torch.tensor([[True, False, True]])
    check_against_reference(cluster, label, region, tags, num_classes=3, unlabelled=254, ignore=255,
                            features_seed=0)


# --------------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [3, 7, -5, 254])
def test_bad_label_value_raises(bad):
    case = _case([[0, 1, bad, 4, IGNORE]], C=3, unlabelled=4)
    with pytest.raises(ValueError, match=rf"(?<![0-9]){bad}(?![0-9])"):
        build_segment_sets(**case)
    with pytest.raises(ValueError):
        ref_segments(**case)


def test_bad_label_value_on_an_otherwise_empty_image_still_raises():
    case = _case([[[IGNORE, IGNORE]], [[IGNORE, 9]]], C=3, unlabelled=4)
    with pytest.raises(ValueError, match="9"):
        build_segment_sets(**case)


# --------------------------------------------------------------------------------------------
# reference batch shape: consistency only
# --------------------------------------------------------------------------------------------

def test_reference_shape_consistency():
    B, H, W, C = 16, 128, 128, 21
    U = C + 1
    g = torch.Generator().manual_seed(0)
    ys = torch.arange(H)[:, None].expand(H, W)
    xs = torch.arange(W)[None, :].expand(H, W)
    cluster = ((ys * 6 // H) * 6 + xs * 6 // W).expand(B, H, W).contiguous()          # 6 x 6 grid
    region = ((ys * 5 // H) * 5 + xs * 5 // W).expand(B, H, W).contiguous()           # 5 x 5 grid
    # 36 clusters x 25 regions on offset grids -> 10 x 10 = 100 intersections per image
    label = torch.full((B, H, W), U)
    for b in range(B):  # a few labelled blobs (scribble-like) per image, padding as ignore
        for _ in range(4):
            y0, x0 = torch.randint(0, H - 8, (2,), generator=g).tolist()
            label[b, y0:y0 + 8, x0:x0 + 8] = int(torch.randint(0, C, (1,), generator=g))
        label[b, :, W - 4 * (b % 3):] = IGNORE
    label[-1] = IGNORE  # one all-ignore image
    tags = torch.rand(B, C, generator=g) < 0.15
    candidates = torch.zeros(B, C, H, W, dtype=torch.bool)
    candidates[:4, [0, 3], 40:60, 40:60] = True  # box-like candidate sets on some unlabelled pixels
    memory = Memory(torch.rand(500, C, generator=g) < 0.05, torch.rand(500, C, generator=g) < 0.1)
    sets = build_segment_sets(cluster, label, region, tags, num_classes=C, unlabelled=U, ignore=IGNORE,
                              candidates=candidates, memory=memory)
    valid = label != IGNORE
    S = sets.num_batch_segments
    per_image = torch.bincount(sets.image[:S], minlength=B)
    assert (per_image[:-1] >= 100).all() and per_image[-1] == 0
    assert int(sets.count.sum()) == int(valid.sum())
    assert (sets.count[:S] > 0).all() and (sets.count[S:] == 0).all()
    assert torch.equal(sets.pixel_segment >= 0, valid.reshape(-1))
    assert torch.equal(torch.bincount(sets.pixel_segment[valid.reshape(-1)], minlength=S), sets.count[:S])
    # every segment is pure: one image, cluster, region, label per pixel
    ps = sets.pixel_segment[valid.reshape(-1)]
    for field, table in [(cluster, sets.cluster), (region, sets.region)]:
        assert torch.equal(field.reshape(-1)[valid.reshape(-1)], table[ps])
    feats = torch.nn.functional.normalize(torch.randn(S, 8, generator=g), dim=1)
    add_affinity(sets, feats, 0.5)
    assert len(sets.relations["O"]) == len(sets.relations["V"]) == int(valid.sum())
    for name, rel in sets.relations.items():
        assert torch.equal(rel.own, sets.pixel_segment[rel.pixels]), name
        # the own segment is a visible candidate of every pixel (column lookup, chunked)
        col = torch.full((len(sets),), -1, dtype=torch.long)
        col[rel.segments] = torch.arange(rel.segments.numel())
        own_col = col[rel.own]
        assert (own_col >= 0).all(), name
        n = len(rel)
        for lo in range(0, n, 32768):
            rows = slice(lo, min(n, lo + 32768))
            r, v = rel.related(rows)
            idx = torch.arange(r.shape[0])
            assert v[idx, own_col[rows]].all(), name
            if name != "O":  # O: an image without a foreground tag is not related to itself
                assert r[idx, own_col[rows]].all(), name
