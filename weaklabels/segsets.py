"""Segments and the positive / negative segment sets of SPML's four relations.

Input, for a batch of ``B`` images on a ``H x W`` grid (the embedding grid):

* ``cluster (B, H, W) long``: a segment id per pixel from any clustering
  (spherical k-means in SPML);
* ``label (B, H, W) long``: the weak label, a class ``0 .. C-1``, ``unlabelled``
  or ``ignore`` (values of the dataset's ``Vocabulary``);
* ``region (B, H, W) long``: a low-level region id per pixel (over-segmentation);
* ``tags (B, C) bool``: each image's foreground tag set (background is never a
  tag: its column is cleared);
* ``candidates (B, C, H, W) bool``, optional: a label *set* per pixel, used
  where the label is ``unlabelled`` but the annotation narrows the classes
  (inside boxes: the covering boxes' classes plus background);
* ``memory``, optional: detached segments of earlier iterations (their label
  sets and tags), used by C and O only.

A *segment* is the set of pixels of one image sharing cluster, region, label
value and candidate set, so every segment is pure in label and region
(``SPML.md`` section 3.4). Ignored pixels belong to no segment and take part in
nothing; unlabelled pixels (without candidates) take part in V and O only.

Each relation is a ``Relation``: the pixels taking part, each pixel's own
segment, the candidate segments, and a compact relatedness description:
either integer keys (related iff equal) or multi-hot sets (related iff they
intersect). No dense pixels x segments matrix is built; ``Relation.related``
gives the block for a chunk of pixels, which is what a loss consumes.

=====  ===================================  ==========================  ======================
rel.   pixels                               candidate segments          related iff
=====  ===================================  ==========================  ======================
C      labelled (a class or a candidate     labelled segments of the    label sets intersect
       set)                                 batch and the memory        (one-hot for a class)
O      all non-ignored                      all segments, batch and     tag sets intersect
                                            memory
V      all non-ignored                      segments of the same image  same region id
A      in a segment with a (propagated)     batch segments with a       propagated label sets
       label set                            (propagated) label set      intersect
=====  ===================================  ==========================  ======================

What each annotation type gives these relations (also in ``data_cards/segment_sets.md``):

* tags: no pixel is labelled (C and A empty) unless CAM-derived labels are
  supplied as ``label``; O uses the tags, V the regions.
* boxes: outside every box is background (a class: C); inside, ``candidates``
  holds the covering boxes' classes plus background and C uses the set form.
* points, scribbles: the labelled pixels carry C; everything else is
  unlabelled and takes part in O and V.
* A: each batch segment without a label takes the label set of the most
  similar labelled segment of its image (cosine of location-weighted
  prototypes, accepted at >= 0.95; ``propagate_labels``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Memory:
    """Detached segments of earlier iterations: ``label_set (M, C) bool`` (empty for unlabelled
    segments) and ``tags (M, C) bool``. Prototypes are kept by the trainer, in the same order."""

    label_set: Tensor
    tags: Tensor

    def __len__(self) -> int:
        return int(self.label_set.shape[0])


@dataclass
class Relation:
    """One relation's pixels, candidate segments and relatedness.

    ``pixels (n,)``: flat pixel indices into ``B * H * W``; ``own (n,)``: each pixel's own
    segment (an index into the segment table); ``segments (m,)``: candidate segment indices.
    Relatedness: ``pixel_key (n,)`` / ``segment_key (m,)`` (equal), or pixel sets / ``segment_set
    (m, K)`` bool (intersect). A pixel's set is its own segment's (segments are pure), so it is
    stored once per segment, ``pixel_set_table (S_total, K)`` looked up through ``own``, keeping
    memory O(segments x K) rather than O(pixels x K); an explicit ``pixel_set (n, K)`` also works. ``pixel_group (n,)`` / ``segment_group (m,)``:
    when given, a pixel only sees candidates of its own group (V: the image).
    """

    name: str
    pixels: Tensor
    own: Tensor
    segments: Tensor
    pixel_key: Tensor | None = None
    segment_key: Tensor | None = None
    pixel_set: Tensor | None = None
    segment_set: Tensor | None = None
    pixel_group: Tensor | None = None
    segment_group: Tensor | None = None
    pixel_set_table: Tensor | None = None

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def pixel_sets(self, rows: slice | Tensor = slice(None)) -> Tensor:
        """The label / tag sets ``(n_rows, K) bool`` of a chunk of this relation's pixels."""
        if self.pixel_set is not None:
            return self.pixel_set[rows]
        return self.pixel_set_table[self.own[rows]]

    def relation(self, rows: slice | Tensor = slice(None), cols: slice | Tensor = slice(None)) -> Tensor:
        """``(n_rows, n_cols) bool``: same key, or intersecting sets, regardless of visibility, for a
        chunk of this relation's pixels and (by default all) candidates."""
        if self.pixel_key is not None:
            return self.pixel_key[rows, None] == self.segment_key[None, cols]
        return (self.pixel_sets(rows).float() @ self.segment_set[cols].float().T) > 0

    def related(self, rows: slice | Tensor = slice(None)) -> tuple[Tensor, Tensor]:
        """``(related, visible)``, both ``(n_rows, m) bool``, for a chunk of this relation's pixels:
        ``visible`` says which candidates the pixel sees at all (its group), ``related`` which of
        those are positives before removing the pixel's own segment."""
        rel = self.relation(rows)
        if self.pixel_group is None:
            visible = torch.ones_like(rel)
        else:
            visible = self.pixel_group[rows, None] == self.segment_group[None, :]
        return rel & visible, visible


@dataclass
class SegmentSets:
    """The segment table of a batch (memory segments appended after the batch's) and the
    relations. Per segment: ``image (S,)`` (-1 for memory), ``cluster``, ``region``,
    ``label (S,)`` (a class, or -1 when unlabelled or a candidate set), ``label_set (S, C)``,
    ``tags (S, C)``, ``count (S,)`` pixels (0 for memory). ``pixel_segment (B*H*W,)`` is each
    pixel's segment, -1 for ignored pixels."""

    pixel_segment: Tensor
    image: Tensor
    cluster: Tensor
    region: Tensor
    label: Tensor
    label_set: Tensor
    tags: Tensor
    count: Tensor
    num_batch_segments: int
    relations: dict[str, Relation]

    def __len__(self) -> int:
        return int(self.image.shape[0])


def _radix_key(fields: list[Tensor]) -> Tensor:
    """One int64 key per element combining integer ``fields`` (mixed radix over their ranges)."""
    key = torch.zeros_like(fields[0])
    total = 1
    for values in fields:
        if values.numel() == 0:
            return key
        lo, hi = int(values.min()), int(values.max())
        radix = hi - lo + 1
        total *= radix
        if total >= 2 ** 62:
            raise ValueError("segment key overflow: too many clusters / regions / label sets")
        key = key * radix + (values - lo)
    return key


def build_segment_sets(cluster: Tensor, label: Tensor, region: Tensor, tags: Tensor, *,
                       num_classes: int, unlabelled: int, ignore: int, background: int | None = 0,
                       candidates: Tensor | None = None, memory: Memory | None = None) -> SegmentSets:
    """Segments and the C, O and V relations of a batch (A: ``add_affinity``). Shapes above."""
    B, H, W = label.shape
    dev = label.device
    C = num_classes
    lab = label.reshape(-1).long()
    valid = lab != ignore
    is_class = valid & (lab >= 0) & (lab < C)
    if ((lab != unlabelled) & valid & ~is_class).any():
        bad = torch.unique(lab[(lab != unlabelled) & valid & ~is_class])[:5].tolist()
        raise ValueError(f"label values {bad} are neither classes 0..{C - 1}, unlabelled ({unlabelled}) "
                         f"nor ignore ({ignore})")
    tags = tags.bool().clone()
    if background is not None:
        tags[:, background] = False

    img = torch.arange(B, device=dev).repeat_interleave(H * W)
    cl = cluster.reshape(-1).long()
    rg = region.reshape(-1).long()
    # label value 0..C-1 for classes, C for unlabelled (kept apart from any class)
    lv = torch.where(is_class, lab, torch.full_like(lab, C))
    # candidate sets: id 0 = none, 1.. = distinct non-empty sets of unlabelled pixels
    set_id = torch.zeros_like(lab)
    sets = torch.zeros((1, C), dtype=torch.bool, device=dev)
    if candidates is not None:
        cand = candidates.permute(0, 2, 3, 1).reshape(-1, C).bool() & (valid & ~is_class)[:, None]
        has = cand.any(1)
        if has.any():
            sets_found, inv = torch.unique(cand[has], dim=0, return_inverse=True)
            set_id[has] = inv + 1
            sets = torch.cat([sets, sets_found])
    v = valid.nonzero().squeeze(1)
    key = _radix_key([img[v], cl[v], rg[v], lv[v], set_id[v]])
    uniq, inv, counts = torch.unique(key, return_inverse=True, return_counts=True)
    S = int(uniq.numel())
    pixel_segment = torch.full_like(lab, -1)
    pixel_segment[v] = inv
    # decode the table from one representative pixel per segment
    first = torch.full((S,), lab.numel(), dtype=torch.long, device=dev).scatter_reduce(0, inv, v, "amin")
    s_img, s_cl, s_rg, s_lv, s_set = img[first], cl[first], rg[first], lv[first], set_id[first]
    s_label = torch.where(s_lv < C, s_lv, torch.full_like(s_lv, -1))
    s_label_set = sets[s_set].clone()
    s_label_set[s_label >= 0] = torch.nn.functional.one_hot(s_label[s_label >= 0], C).bool()
    s_tags = tags[s_img]

    M = 0 if memory is None else len(memory)
    if M:
        s_img = torch.cat([s_img, torch.full((M,), -1, device=dev, dtype=torch.long)])
        s_cl = torch.cat([s_cl, torch.full((M,), -1, device=dev, dtype=torch.long)])
        s_rg = torch.cat([s_rg, torch.full((M,), -1, device=dev, dtype=torch.long)])
        m_set = memory.label_set.bool().to(dev)
        m_label = torch.where(m_set.sum(1) == 1, m_set.float().argmax(1), torch.full((M,), -1, device=dev))
        s_label = torch.cat([s_label, m_label])
        s_label_set = torch.cat([s_label_set, m_set])
        m_tags = memory.tags.bool().to(dev).clone()
        if background is not None:
            m_tags[:, background] = False
        s_tags = torch.cat([s_tags, m_tags])
        counts = torch.cat([counts, torch.zeros(M, dtype=counts.dtype, device=dev)])

    own = pixel_segment[v]
    relations: dict[str, Relation] = {}
    # C: pixels with a class or a candidate set, against labelled segments (batch + memory)
    lab_px = v[(is_class[v]) | (set_id[v] > 0)]
    seg_labelled = s_label_set.any(1).nonzero().squeeze(1)
    relations["C"] = Relation("C", lab_px, pixel_segment[lab_px], seg_labelled,
                              pixel_set_table=s_label_set, segment_set=s_label_set[seg_labelled])
    # O: every non-ignored pixel against every segment, by tag-set intersection
    all_seg = torch.arange(S + M, device=dev)
    relations["O"] = Relation("O", v, own, all_seg, pixel_set_table=s_tags, segment_set=s_tags)
    # V: every non-ignored pixel against its own image's segments, by region id
    batch_seg = torch.arange(S, device=dev)
    relations["V"] = Relation("V", v, own, batch_seg, pixel_key=rg[v], segment_key=s_rg[:S],
                              pixel_group=img[v], segment_group=s_img[:S])
    return SegmentSets(pixel_segment, s_img, s_cl, s_rg, s_label, s_label_set, s_tags, counts, S, relations)


def propagate_labels(sets: SegmentSets, features: Tensor, threshold: float = 0.95) -> Tensor:
    """Label sets of the batch segments after feature-affinity propagation, ``(S, C) bool``.

    ``features (S, D)``: unit-norm, location-weighted prototypes of the batch segments. Each
    segment without a label set takes the set of the most similar labelled segment of the same
    image when their cosine is at least ``threshold``.
    """
    S = sets.num_batch_segments
    out = sets.label_set[:S].clone()
    labelled = out.any(1)
    if not labelled.any() or labelled.all():
        return out
    sim = features[:S] @ features[:S][labelled].T                     # (S, L)
    same = sets.image[:S, None] == sets.image[:S][labelled][None, :]
    sim = sim.masked_fill(~same, -2.0)
    best, j = sim.max(1)
    take = ~labelled & (best >= threshold)
    out[take] = sets.label_set[:S][labelled][j[take]]
    return out


def add_affinity(sets: SegmentSets, features: Tensor, threshold: float = 0.95) -> Relation:
    """Relation A: the pixels of every batch segment with a (propagated) label set - labelled ones
    and those whose segment took a label by affinity - against those segments; related iff the
    propagated sets intersect. Propagation is what lets A supervise unlabelled pixels at all."""
    prop = propagate_labels(sets, features, threshold)
    has = prop.any(1)
    v = (sets.pixel_segment >= 0).nonzero().squeeze(1)   # non-ignored pixels, all in batch segments
    own = sets.pixel_segment[v]
    keep = has[own]
    pixels, own = v[keep], own[keep]
    segs = has.nonzero().squeeze(1)
    rel = Relation("A", pixels, own, segs, pixel_set_table=prop, segment_set=prop[segs])
    sets.relations["A"] = rel
    return rel
