"""Scribbles: one stroke along each object's medial path.

Protocol (defaults in brackets):

* one scribble per instance when instance masks exist; otherwise one per
  *wide part* of each class: the class's pixels (at least ``min_area`` [10])
  on a grid of at most ``max_cells`` [32] cells per side, split into the
  connected parts of the cells with room for a stroke (parts of at least 2
  cells; the largest part always). With ``background`` [on], one per wide part
  of the background (at least 8 cells). As ScribbleSup annotators drew: a
  stroke per object, background included;
* the stroke follows the object's *medial path*: on the object's coarse grid
  (``objects.interior``) take the inside cell farthest from the boundary, the
  cell ``a`` farthest from it in straight-line distance, and the least-cost path
  from ``a`` to the cell geodesically farthest from ``a``, where stepping through
  a cell costs ``1 / clearance`` so the path keeps to the middle (scikit-image's
  ``MCP_Geometric``);
* only cells with room for the stroke are used: a vertex is at most half a cell
  diagonal from any point of the segments next to it, so a cell qualifies when
  its clearance exceeds ``width / 2`` pixels plus that half diagonal; every
  pixel the stroke covers is therefore a pixel of the object;
* ``length_ratio`` [1.0] keeps the middle part of the path (SPML's shortened
  scribbles: 0.8 / 0.5 / 0.3); 0.0 keeps its midpoint only, a single click
  (SPML's points setting);
* an object with no room for a stroke gets a one-pixel dot (width 1) on its
  most interior pixel, so every object keeps a label.

Width is ``width`` [3 px, as SPML]. Vertices are pixel-edge coordinates;
collinear vertices are dropped.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.graph import MCP_Geometric

from weaklabels.errors import SchemaError
from weaklabels.synth.objects import SQRT_HALF, Interior, find_objects, interior_with_cells

_EIGHT = np.ones((3, 3), bool)
from weaklabels.types import Sample, Scribbles


def _farthest(costs: np.ndarray) -> tuple[int, int]:
    c = np.where(np.isfinite(costs), costs, -1.0)
    return np.unravel_index(int(c.argmax()), c.shape)  # type: ignore[return-value]


def safe_parts(it: Interior, min_clearance_px: float) -> tuple[np.ndarray, int]:
    """Label ``(gh, gw)`` of the 8-connected parts of the cells whose clearance leaves room for a
    stroke keeping ``min_clearance_px`` from the outside, and the number of parts."""
    margin = SQRT_HALF * it.stride  # a segment point is within half a cell diagonal of a vertex
    ok = it.clearance_px() - margin > min_clearance_px
    return ndimage.label(ok, structure=_EIGHT)


def medial_path(it: Interior, part: np.ndarray) -> np.ndarray:
    """Cells ``(N, 2)`` (row, col) of a long path through the middle of ``part (gh, gw) bool``.

    Double sweep: from the part's most interior cell take the Euclidean-farthest cell
    ``a``, then the cell ``b`` geodesically farthest from ``a``, and the least-cost path
    ``a -> b`` where a cell costs ``1 / clearance`` (so the path keeps to the middle).
    """
    cells = np.argwhere(part)
    if len(cells) == 1:
        return cells
    d = it.clearance[part]
    start = cells[int(d.argmax())]
    a = tuple(cells[int(((cells - start) ** 2).sum(1).argmax())])
    cost = np.where(part, 1.0 / np.maximum(it.clearance, 1e-6), np.inf)
    mcp = MCP_Geometric(cost)
    costs, _ = mcp.find_costs([a])
    return np.asarray(mcp.traceback(_farthest(costs)), np.int64)


def _drop_collinear(xy: np.ndarray) -> np.ndarray:
    if len(xy) < 3:
        return xy
    d = np.diff(xy, axis=0)
    cross = d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]
    keep = np.concatenate([[True], np.abs(cross) > 1e-9, [True]])
    return xy[keep]


def shorten(xy: np.ndarray, ratio: float) -> np.ndarray:
    """The middle ``ratio`` of a polyline's length (``ratio = 0``: its midpoint)."""
    if ratio >= 1.0 or len(xy) == 1:
        return xy
    seg = np.hypot(*np.diff(xy, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    lo, hi = (1 - ratio) / 2 * total, (1 + ratio) / 2 * total

    def at(t: float) -> np.ndarray:
        j = int(np.clip(np.searchsorted(cum, t, side="right") - 1, 0, len(seg) - 1))
        f = 0.0 if seg[j] == 0 else (t - cum[j]) / seg[j]
        return xy[j] + f * (xy[j + 1] - xy[j])

    if ratio <= 0.0:
        return at(total / 2)[None]
    inner = xy[(cum > lo) & (cum < hi)]
    return np.vstack([at(lo)[None], inner, at(hi)[None]])


# Grid cells of room a part of a class (of the background) needs to get its own stroke; the
# largest part of every object always gets one.
_PART_CELLS = 2
_BG_PART_CELLS = 8


def synthesize_scribbles(sample: Sample, *, seed: int = 0, width: float = 3.0, length_ratio: float = 1.0,
                         background: bool = True, min_area: int = 10, max_cells: int = 32) -> Scribbles:
    """Scribbles for every object of ``sample``. Deterministic: the protocol draws no random numbers
    (``seed`` is accepted for a uniform interface)."""
    rec = f"image {sample.image_id!r}"
    if not 0.0 <= length_ratio <= 1.0:
        raise SchemaError(f"length_ratio={length_ratio}; expected 0..1")
    if width <= 0:
        raise SchemaError(f"width={width}; expected a positive stroke width in pixels")
    if sample.semantic is None:
        if sample.scribbles is not None:
            return sample.scribbles
        raise SchemaError(f"{rec}: scribbles need a class mask (or given scribbles)")
    # Labelled pixels are those whose centre lies within width / 2 of the stroke (raster.py):
    # the stroke must keep more than that from every outside pixel centre.
    half = width / 2.0
    lines, classes, widths = [], [], []
    # Without instance masks a class is one object split into its wide parts on its grid, which
    # spares a full-resolution connected-components pass per class.
    objects = find_objects(sample, min_area=min_area, background=background, per_class=sample.instances is None)
    for obj in objects:
        it = interior_with_cells(obj, max_cells)
        parts, n = safe_parts(it, half)
        while n == 0 and it.stride > 1:
            # too thin for a stroke at this grid: retry on a grid twice as fine, down to pixels
            it = interior_with_cells(obj, -(-max(obj.mask.shape) // max(1, it.stride // 2)))
            parts, n = safe_parts(it, half)
        if n == 0:
            r, c = np.unravel_index(int(it.clearance.argmax()), it.clearance.shape)
            s = it.stride
            lines.append(np.array([[obj.x0 + c * s + s // 2 + 0.5, obj.y0 + r * s + s // 2 + 0.5]]))
            widths.append(1.0)
            classes.append(obj.cls)
            continue
        sizes = np.bincount(parts.ravel())[1:]
        if obj.instance is not None:
            keep = [int(sizes.argmax()) + 1]  # one stroke per instance, in its widest part
        else:
            # a class (or the background) as a whole: a stroke in each of its wide parts
            least = min(_BG_PART_CELLS if obj.cls == sample.vocabulary.background else _PART_CELLS, int(sizes.max()))
            keep = [k + 1 for k in np.argsort(-sizes, kind="stable") if sizes[k] >= least]
        for k in keep:
            path = medial_path(it, parts == k)
            lines.append(_drop_collinear(shorten(it.centres(path), length_ratio)))
            widths.append(float(width))
            classes.append(obj.cls)
    return Scribbles(tuple(lines), np.asarray(classes, np.int64), widths=np.asarray(widths), record=rec)
