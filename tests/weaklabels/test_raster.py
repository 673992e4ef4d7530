"""Tests for rasterising weak annotations into a label map.

Properties checked against brute-force references over pixel centres
``(c + 0.5, r + 0.5)``: a box covers exactly the pixels whose centre it holds,
a point labels the pixel ``(floor(y), floor(x))``, a scribble labels only
pixels near its polyline; the special values are the vocabulary's.
"""

from __future__ import annotations

import numpy as np
import pytest

from weaklabels.errors import SchemaError
from weaklabels.raster import box_pixels, rasterize
from weaklabels.types import Boxes, ImageTags, Points, Sample, Scribbles, Vocabulary

VOC = Vocabulary.voc()
# Special values away from the defaults, so a hard-coded 254/255 shows up.
CUSTOM = Vocabulary(("bg", "cat", "dog", "cow"), unlabelled=200, ignore=250)
H, W = 17, 23


def _sample(vocab=VOC, h=H, w=W, **anns) -> Sample:
    return Sample("r1", h, w, vocab, **anns)


def _centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)``, each ``(h, w)``."""
    r, c = np.mgrid[0:h, 0:w]
    return c + 0.5, r + 0.5


def _brute_box(xyxy, h, w) -> np.ndarray:
    """``(h, w) bool``: pixels whose centre lies in ``[x0, x1) x [y0, y1)``, by looping."""
    out = np.zeros((h, w), bool)
    x0, y0, x1, y1 = xyxy
    for r in range(h):
        for c in range(w):
            if x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1:
                out[r, c] = True
    return out


def _dist_to_polyline(line: np.ndarray, h: int, w: int) -> np.ndarray:
    """``(h, w)``: distance from every pixel centre to the polyline (a dot for one vertex)."""
    px, py = _centres(h, w)
    if len(line) == 1:
        return np.hypot(px - line[0, 0], py - line[0, 1])
    best = np.full((h, w), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        d = b - a
        den = float(d @ d)
        t = np.zeros_like(px) if den == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / den, 0, 1)
        best = np.minimum(best, np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1])))
    return best


# --------------------------------------------------------------------------- tags


@pytest.mark.parametrize("vocab", [VOC, CUSTOM], ids=["voc", "custom"])
def test_tags_leave_every_pixel_unlabelled(vocab):
    out = rasterize(_sample(vocab, tags=ImageTags([1, 2])), "tags")
    assert out.shape == (H, W) and out.dtype == np.uint8
    assert (out == vocab.unlabelled).all()


def test_missing_or_unknown_kind_is_refused_naming_the_image():
    s = _sample(tags=ImageTags([1]))
    with pytest.raises(SchemaError, match=r"image 'r1'.*'boxes'"):
        rasterize(s, "boxes")
    with pytest.raises(SchemaError, match="'semantic'"):
        rasterize(s, "semantic")


# --------------------------------------------------------------------------- boxes


def test_box_pixels_of_integer_edges():
    assert box_pixels(np.array([[2, 3, 5, 7]]), 10, 10).tolist() == [[2, 3, 5, 7]]
    # clipped to the image
    assert box_pixels(np.array([[-4, -1, 50, 60]]), 10, 12).tolist() == [[0, 0, 12, 10]]


def test_voc_single_pixel_box_covers_pixel_zero():
    s = _sample(boxes=Boxes.from_voc_inclusive([[1, 1, 1, 1]], [5]))
    out = rasterize(s, "boxes")
    assert out[0, 0] == VOC.unlabelled
    assert (np.delete(out.ravel(), 0) == VOC.background).all()


def test_integer_box_covers_exactly_its_pixels():
    rng = np.random.default_rng(0)
    for _ in range(60):
        x0, x1 = sorted(rng.choice(W + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(H + 1, 2, replace=False))
        out = rasterize(_sample(boxes=Boxes([[x0, y0, x1, y1]], [3])), "boxes")
        inside = _brute_box((x0, y0, x1, y1), H, W)
        assert inside.sum() == (x1 - x0) * (y1 - y0)
        assert (out[inside] == VOC.unlabelled).all()
        assert (out[~inside] == VOC.background).all()


def test_fractional_boxes_cover_the_pixels_whose_centre_they_hold():
    rng = np.random.default_rng(1)
    for _ in range(60):
        # random float edges, partly outside the image
        x0, x1 = np.sort(rng.uniform(-2, W + 2, 2))
        y0, y1 = np.sort(rng.uniform(-2, H + 2, 2))
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(max(x1, x0 + 0.01), W), min(max(y1, y0 + 0.01), H)
        out = rasterize(_sample(boxes=Boxes([[x0, y0, x1, y1]], [3])), "boxes")
        inside = _brute_box((x0, y0, x1, y1), H, W)
        assert np.array_equal(out == VOC.unlabelled, inside), (x0, y0, x1, y1)


def test_union_of_boxes_and_custom_values():
    boxes = Boxes([[0, 0, 5, 5], [3, 2, 10, 9], [15.2, 1.7, 20.6, 16.1]], [1, 2, 3])
    out = rasterize(_sample(CUSTOM, boxes=boxes), "boxes")
    inside = np.zeros((H, W), bool)
    for b in boxes.xyxy:
        inside |= _brute_box(b, H, W)
    assert np.array_equal(out == CUSTOM.unlabelled, inside)
    assert (out[~inside] == CUSTOM.background).all()
    assert set(np.unique(out)) == {CUSTOM.background, CUSTOM.unlabelled}


def test_crowd_box_is_ignore_unless_a_regular_box_covers_it():
    crowd_box, regular = (2, 2, 12, 10), (8, 6, 16, 14)
    boxes = Boxes([crowd_box, regular], [1, 2], crowd=[True, False])
    for vocab in (VOC, CUSTOM):
        out = rasterize(_sample(vocab, boxes=boxes), "boxes")
        in_crowd, in_regular = _brute_box(crowd_box, H, W), _brute_box(regular, H, W)
        assert (out[in_crowd & ~in_regular] == vocab.ignore).all()
        assert (out[in_regular] == vocab.unlabelled).all()
        assert (out[~in_crowd & ~in_regular] == vocab.background).all()
    # order of the boxes does not matter
    swapped = Boxes([regular, crowd_box], [2, 1], crowd=[False, True])
    assert np.array_equal(rasterize(_sample(boxes=swapped), "boxes"), rasterize(_sample(boxes=boxes), "boxes"))


def test_boxes_without_background_class_leave_outside_unlabelled():
    vocab = Vocabulary(("road", "car"), background=None, unlabelled=200, ignore=250)
    out = rasterize(_sample(vocab, boxes=Boxes([[0, 0, 4, 4], [6, 6, 9, 9]], [1, 1], crowd=[False, True])), "boxes")
    assert (out[:4, :4] == 200).all()
    assert (out[6:9, 6:9] == 250).all()
    assert ((out == 200) | (out == 250)).all()


# --------------------------------------------------------------------------- points


@pytest.mark.parametrize("vocab", [VOC, CUSTOM], ids=["voc", "custom"])
def test_point_labels_the_pixel_under_it(vocab):
    rng = np.random.default_rng(2)
    xy = np.column_stack([rng.uniform(0, W, 30), rng.uniform(0, H, 30)])
    xy[0] = (0.0, 0.0)
    xy[1] = (W - 1e-9, H - 1e-9)
    xy[2] = (5.0, 7.0)  # on a pixel corner: floor picks the pixel to the lower right
    # one point per pixel, so no overwrite decides the result
    _, keep = np.unique(np.floor(xy[:, ::-1]).astype(int), axis=0, return_index=True)
    xy = xy[np.sort(keep)]
    classes = rng.integers(0, len(vocab), len(xy))
    out = rasterize(_sample(vocab, points=Points(xy, classes)), "points")
    rows, cols = np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)
    assert out[rows, cols].tolist() == classes.tolist()
    rest = np.ones((H, W), bool)
    rest[rows, cols] = False
    assert (out[rest] == vocab.unlabelled).all()


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.5])
def test_point_disc_holds_the_pixel_under_it_and_stays_near(radius):
    rng = np.random.default_rng(3)
    for _ in range(40):
        x, y = rng.uniform(0.05, W - 0.05), rng.uniform(0.05, H - 0.05)
        out = rasterize(_sample(CUSTOM, points=Points([[x, y]], [2])), "points", point_radius=radius)
        assert out[int(y), int(x)] == 2
        px, py = _centres(H, W)
        labelled = out == 2
        assert (np.hypot(px - x, py - y)[labelled] <= radius + 1.5).all()
        assert (out[~labelled] == CUSTOM.unlabelled).all()


# --------------------------------------------------------------------------- scribbles


def _random_scribble(rng, n_vertices: int, width: float) -> Scribbles:
    line = np.column_stack([rng.uniform(0, W, n_vertices), rng.uniform(0, H, n_vertices)])
    return Scribbles((line,), [2], widths=[width])


def test_scribbles_use_the_vocabulary_values():
    rng = np.random.default_rng(4)
    lines = tuple(np.column_stack([rng.uniform(0, W, 3), rng.uniform(0, H, 3)]) for _ in range(3))
    out = rasterize(_sample(CUSTOM, scribbles=Scribbles(lines, [1, 2, 3], widths=[3, 3, 3])), "scribbles")
    values = set(np.unique(out).tolist())
    assert CUSTOM.unlabelled in values
    assert values <= {1, 2, 3, CUSTOM.unlabelled}
    assert CUSTOM.ignore not in values and 0 not in values


def test_axis_aligned_scribble_covers_its_band():
    # a horizontal line on the edge between rows 7 and 8, width 2: exactly rows 7 and 8
    s = Scribbles((np.array([[3.0, 8.0], [15.0, 8.0]]),), [1], widths=[2.0])
    out = rasterize(_sample(scribbles=s), "scribbles")
    rows = np.flatnonzero((out == 1).any(1))
    assert rows.tolist() == [7, 8]
    assert (out[7:9, 3:15] == 1).all()


@pytest.mark.parametrize("width", [1.0, 3.0, 5.0])
def test_scribble_centre_line_pixels_are_labelled(width):
    # pixels whose centre is on the segment (well inside it) must be labelled
    s = Scribbles((np.array([[2.5, 1.5], [16.5, 15.5]]),), [1], widths=[width])
    out = rasterize(_sample(scribbles=s), "scribbles")
    d = _dist_to_polyline(s.lines[0], H, W)
    px, _ = _centres(H, W)
    on_line = (d < 1e-9) & (px > 3) & (px < 16)
    assert on_line.sum() == 13
    assert (out[on_line] == 1).all()


def test_scribble_labels_only_pixels_near_the_polyline():
    rng = np.random.default_rng(5)
    worst = 0.0
    for k in range(200):
        width = float(rng.choice([1.0, 2.0, 3.0, 4.5, 6.0]))
        s = _random_scribble(rng, int(rng.integers(2, 5)), width)
        out = rasterize(_sample(scribbles=s), "scribbles")
        labelled = out == 2
        assert labelled.any()
        d = _dist_to_polyline(s.lines[0], H, W)
        worst = max(worst, float((d[labelled] - width / 2).max()))
    assert worst <= 1.0, f"a labelled pixel is {worst:.2f} px beyond width/2 from its scribble"


def test_mirrored_scribble_gives_mirrored_labels():
    # the same scribble mirrored left-right must give the mirrored label map
    s = Scribbles((np.array([[4.0, 3.0], [16.0, 15.0]]),), [1], widths=[3.0])
    m = Scribbles((np.array([[W - 4.0, 3.0], [W - 16.0, 15.0]]),), [1], widths=[3.0])
    a = rasterize(_sample(scribbles=s), "scribbles")
    b = rasterize(_sample(scribbles=m), "scribbles")
    assert np.array_equal(a, b[:, ::-1])


@pytest.mark.parametrize("width", [0.5, 1.0, 1.5, 4.0, 6.0])
def test_single_vertex_scribble_labels_pixel_under_it(width):
    rng = np.random.default_rng(6 if width > 2 else 7)
    for _ in range(100):
        c, r = int(rng.integers(0, W)), int(rng.integers(0, H))
        x, y = c + rng.uniform(0.1, 0.9), r + rng.uniform(0.1, 0.9)
        s = Scribbles((np.array([[x, y]]),), [2], widths=[width])
        out = rasterize(_sample(scribbles=s), "scribbles")
        assert out[r, c] == 2, (x, y, width)
        if width > 2:  # a wide dot stays within its radius
            d = _dist_to_polyline(s.lines[0], H, W)
            assert (d[out == 2] <= width / 2 + 1).all()


def test_single_vertex_scribble_default_width():
    rng = np.random.default_rng(8)
    for _ in range(100):
        c, r = int(rng.integers(0, W)), int(rng.integers(0, H))
        x, y = c + rng.uniform(0.1, 0.9), r + rng.uniform(0.1, 0.9)
        out = rasterize(_sample(scribbles=Scribbles((np.array([[x, y]]),), [2])), "scribbles")
        assert out[r, c] == 2, (x, y)



def test_candidate_sets_of_boxes():
    from weaklabels.raster import rasterize_candidates
    from weaklabels.types import Boxes, Sample, Vocabulary

    voc = Vocabulary(("background", "a", "b"))
    s = Sample("c", 6, 8, voc, boxes=Boxes([[0, 0, 4, 4], [2, 2, 6, 6], [6, 0, 8, 2]], [1, 2, 1],
                                           crowd=[False, False, True]))
    cand = rasterize_candidates(s)
    weak = rasterize(s, "boxes")
    assert cand.shape == (3, 6, 8)
    assert cand[:, 3, 3].tolist() == [True, True, True]      # covered by both boxes
    assert cand[:, 0, 0].tolist() == [True, True, False]
    assert not cand[:, 0, 7].any() and weak[0, 7] == 255      # ignore box: no candidates
    assert not cand[:, 5, 7].any() and weak[5, 7] == 0        # outside: background label
    assert (cand.any(0) == (weak == 254)).all()               # candidates exactly where unlabelled
