"""Points: labelled clicks inside objects.

Protocol (defaults in brackets):

* ``per``: ``class`` [default] puts ``k`` points on the union of a class's
  pixels, as What's-the-Point annotators clicked once per class present;
  ``instance`` puts ``k`` points on each object (instance, or connected
  component of at least ``min_area`` pixels; see ``objects.find_objects``).
* ``placement``:
  - ``center`` [default]: the interior point farthest from the boundary
    (the distance-transform maximum on the object's coarse grid: within one
    grid cell of the exact maximum; never a centroid, which can fall outside);
    further points (``k > 1``) maximise the smaller of the clearance and the
    distance to points already placed;
  - ``random``: uniform over the interior eroded to ``erosion`` x the
    object's largest clearance [0.3];
  - ``human``: the clearance of the clicked pixel, relative to the object's
    largest clearance, follows the distribution of the What's-the-Point
    clicks that land on their own class (``HUMAN_CLEARANCE_HIST``).
* ``background`` [off]: also ``k`` points on the background, taken as one object.

Every point sits on a pixel centre of a grid cell lying wholly inside its
object, so the labelled pixel always has the point's class in the full mask.
"""

from __future__ import annotations

import numpy as np

from weaklabels.errors import SchemaError
from weaklabels.synth.objects import Interior, find_objects, interior_with_cells
from weaklabels.synth.seeding import rng_for
from weaklabels.types import Points, Sample

PLACEMENTS = ("center", "random", "human")

# Histogram (10 equal bins over [0, 1]) of clearance(click) / max clearance of the
# class region, for the 4,719 What's-the-Point clicks (of 5,734) that land on their own
# class in the 2,000 shared VOC masks. Re-derived by benchmarks/fidelity.py --fit-human.
HUMAN_CLEARANCE_HIST = (0.039, 0.0771, 0.0922, 0.1064, 0.1117, 0.1373, 0.143, 0.1297, 0.1066, 0.057)


def _pixel_in_cell(it: Interior, cell: np.ndarray, rng: np.random.Generator | None) -> tuple[float, float]:
    """Pixel-centre (x, y) of a pixel inside ``cell``: its middle pixel, or a random one."""
    s = it.stride
    off = rng.integers(0, s, size=2) if (rng is not None and s > 1) else np.array([s // 2, s // 2])
    h, w = it.obj.mask.shape
    r = min(int(cell[0]) * s + int(off[0]), h - 1)
    c = min(int(cell[1]) * s + int(off[1]), w - 1)
    if not it.obj.mask[r, c]:  # cannot happen for an inside cell; keeps the invariant explicit
        r, c = int(cell[0]) * s, int(cell[1]) * s
    return it.obj.x0 + c + 0.5, it.obj.y0 + r + 0.5


def _place(it: Interior, k: int, placement: str, rng: np.random.Generator, erosion: float) -> list[tuple[float, float]]:
    d = it.clearance
    cells = np.argwhere(d > 0)
    vals = d[cells[:, 0], cells[:, 1]]
    out: list[tuple[float, float]] = []
    if placement == "center":
        chosen: list[np.ndarray] = []
        score = vals.astype(np.float64).copy()
        for _ in range(k):
            j = int(score.argmax())
            chosen.append(cells[j])
            dist = np.hypot(*(cells - cells[j]).T)
            score = np.minimum(score, dist)
        return [_pixel_in_cell(it, c, None) for c in chosen]
    if placement == "random":
        keep = vals >= erosion * vals.max()
        pool = cells[keep]
        for j in rng.integers(0, len(pool), size=k):
            out.append(_pixel_in_cell(it, pool[j], rng))
        return out
    # human: draw a relative-clearance bin, then a cell uniformly within it
    rel = vals / vals.max()
    bins = np.minimum((rel * 10).astype(int), 9)
    hist = np.asarray(HUMAN_CLEARANCE_HIST)
    for _ in range(k):
        avail = np.bincount(bins, minlength=10) > 0
        p = hist * avail
        b = int(rng.choice(10, p=p / p.sum()))
        members = np.flatnonzero(bins == b)
        out.append(_pixel_in_cell(it, cells[members[rng.integers(0, len(members))]], rng))
    return out


def synthesize_points(sample: Sample, *, seed: int = 0, k: int = 1, per: str = "class",
                      placement: str = "center", background: bool = False, min_area: int = 10,
                      erosion: float = 0.3, max_cells: int = 32) -> Points:
    rec = f"image {sample.image_id!r}"
    if placement not in PLACEMENTS:
        raise SchemaError(f"placement={placement!r}; expected one of {', '.join(PLACEMENTS)}")
    if per not in ("class", "instance"):
        raise SchemaError(f"per={per!r}; expected class or instance")
    if k < 1:
        raise SchemaError(f"k={k}; expected at least one point per object")
    if sample.semantic is None:
        if sample.points is not None:
            return sample.points
        raise SchemaError(f"{rec}: points need a class mask (or given points)")
    objects = find_objects(sample, min_area=min_area, background=background, per_class=(per == "class"))
    xy, cls = [], []
    seen: dict[int, int] = {}
    for obj in objects:
        # One generator per (class, n-th object of that class): adding an object elsewhere
        # in the image does not move this one's points.
        nth = seen[obj.cls] = seen.get(obj.cls, -1) + 1
        rng = rng_for(seed, sample.image_id, obj.cls, nth)
        for p in _place(interior_with_cells(obj, max_cells), k, placement, rng, erosion):
            xy.append(p)
            cls.append(obj.cls)
    return Points(np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(cls, np.int64), record=rec)
