"""Procedural "shapes" scenes: textured shapes of several classes on textured backgrounds.

Used to build a small bundled sample dataset, as toy data a segmentation network can learn
on CPU, and by ``weaklabels sample shapes --out DIR --num-images N --seed S``.

What a scene holds (see ``Scene``):

* ``image``: ``(H, W, 3) uint8`` RGB. Each object is a filled shape; a class is
  recognisable by its shape *and* its appearance (a class-specific base hue, saturation,
  brightness and texture kind). Per image the size, position, rotation, aspect, z-order,
  colour and texture phase are jittered. Backgrounds are textured and desaturated, so no
  background colour equals a class colour.
* ``semantic``: ``(H, W) uint8`` class indices, 0 = background.
* ``instances``: ``(H, W) uint8`` instance ids ``1..N`` in z-order (1 is the bottom object),
  0 = background. Ids label the *visible* part after occlusion; an instance whose visible
  area is below ``min_visible_area`` pixels is dropped (not drawn at all).
* With ``boundary=True`` a 1-px void band (255, ``Vocabulary.ignore``) covers the inner
  boundary pixels of each object where it meets another label, in both maps, like VOC's band.

Conventions:

* Class ``k`` is the ``j``-th foreground index of the vocabulary (``j = 0, 1, ...``); it is
  drawn as ``SHAPE_NAMES[j % len(SHAPE_NAMES)]`` and its appearance is fixed by ``j``
  (``class_style``). With ``shapes_vocabulary`` and VOC, ``j = k - 1``.
* Geometry is in pixel-edge coordinates (``types.py``): pixel ``(r, c)`` has centre
  ``(c + 0.5, r + 0.5)``; shape membership is tested at pixel centres.
* Randomness: scene ``index`` of seed ``seed`` draws only from
  ``np.random.default_rng((seed, index))``, so a scene is the same however many scenes are
  made and in what order.

``write_shapes`` writes a PASCAL-VOC-layout dataset (JPEGImages, SegmentationClass,
SegmentationObject, Annotations, ImageSets/Segmentation, class_names.txt) plus COCO
instance JSON files with non-contiguous category ids (``2 * k + 1`` for class ``k``).
"""

from __future__ import annotations

import colorsys
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from weaklabels.errors import SchemaError
from weaklabels.types import IGNORE, VOC_PALETTE, Vocabulary

logger = logging.getLogger(__name__)

SHAPE_NAMES = ("disc", "square", "triangle", "ring", "star", "cross", "hexagon", "crescent")
TEXTURE_KINDS = ("mottled", "stripes", "checker", "dots", "waves", "rings")

_GOLDEN = 0.6180339887


# --------------------------------------------------------------------------- vocabulary & styles


def shapes_vocabulary(num_classes: int = 5) -> Vocabulary:
    """``background`` + ``num_classes`` shape classes named after their shape.

    Beyond ``len(SHAPE_NAMES)`` classes the names repeat with a suffix: ``disc_2``, ...
    """
    if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= 253:
        raise SchemaError(f"shapes_vocabulary: num_classes={num_classes!r}; expected an integer in 1..253")
    names = ["background"]
    for j in range(int(num_classes)):
        shape, rnd = SHAPE_NAMES[j % len(SHAPE_NAMES)], j // len(SHAPE_NAMES)
        names.append(shape if rnd == 0 else f"{shape}_{rnd + 1}")
    return Vocabulary(tuple(names))


@dataclass(frozen=True)
class ClassStyle:
    """How class ``j`` (j-th foreground class) looks: shape, colours (HSV in 0..1), texture."""

    shape: str
    hue: float
    saturation: float
    value: float
    texture: str
    period: float  # texture period in pixels
    contrast: float  # 0 = flat colour, 1 = full mix of the two texture colours


def class_style(j: int) -> ClassStyle:
    """Fixed appearance of the ``j``-th foreground class (0-based)."""
    n = len(SHAPE_NAMES)
    s, rnd = j % n, j // n
    # Golden-ratio hues separate the shapes of one round; later rounds (classes sharing a
    # shape) sit half and a third of the hue circle away and change brightness and texture.
    hue = (_GOLDEN * s + 0.5 * rnd + 0.17 * (rnd // 2)) % 1.0
    sat, val = ((0.85, 0.92), (0.62, 0.72), (0.95, 0.55))[rnd % 3]
    texture = TEXTURE_KINDS[(s + 2 * rnd) % len(TEXTURE_KINDS)]
    period = 5.0 + (3 * j) % 5
    contrast = 0.35 + 0.1 * (j % 3)
    return ClassStyle(SHAPE_NAMES[s], hue, sat, val, texture, period, contrast)


# --------------------------------------------------------------------------- scene


@dataclass(frozen=True, eq=False)
class Scene:
    """One rendered scene.

    ``image: (H, W, 3) uint8`` RGB; ``semantic: (H, W) uint8`` class indices (0 = background,
    255 on the void band when rendered with ``boundary=True``); ``instances: (H, W) uint8``
    ids 1..N (0 = background, 255 where semantic is 255); ``instance_classes: (N,) int64``
    class of instance ``k + 1``; ``visible_instances: (H, W) uint8`` the instance ids before
    the void band is cut out (equal to ``instances`` without ``boundary``), which gives each
    object's full visible extent for boxes and polygons.
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    instance_classes: np.ndarray
    visible_instances: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.visible_instances is None:
            object.__setattr__(self, "visible_instances", self.instances)
        for name in ("image", "semantic", "instances", "instance_classes", "visible_instances"):
            getattr(self, name).setflags(write=False)


@dataclass
class _Object:
    cls: int
    style: ClassStyle
    window: tuple[slice, slice]
    mask: np.ndarray  # (h, w) bool inside window
    u: np.ndarray  # (h, w) local frame in pixels, rotated with the object
    v: np.ndarray


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.asarray(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """``(h, w) float32`` in about 0..1: low-res uniform noise upsampled bicubically."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    low = Image.fromarray(rng.random((gh, gw), dtype=np.float32), "F")
    return np.asarray(low.resize((w, h), Image.BICUBIC), np.float32)


def _texture(kind: str, u: np.ndarray, v: np.ndarray, period: float,
             rng: np.random.Generator) -> np.ndarray:
    """Texture in 0..1 over local coordinates ``u, v`` (pixels); shape of ``u``."""
    f = 2 * np.pi / period
    ph = rng.uniform(0, 2 * np.pi, 2)
    if kind == "mottled":
        return _smooth_noise(rng, u.shape[0], u.shape[1], period * 0.8)
    if kind == "stripes":
        return 0.5 + 0.5 * np.sin(f * u + ph[0])
    if kind == "checker":
        return ((np.floor(u / period + ph[0]) + np.floor(v / period + ph[1])) % 2).astype(np.float32)
    if kind == "dots":
        return (np.sin(f * u + ph[0]) * np.sin(f * v + ph[1]) > 0.35).astype(np.float32)
    if kind == "waves":
        return 0.5 + 0.5 * np.sin(f * (u + 0.35 * period * np.sin(0.5 * f * v + ph[1])) + ph[0])
    if kind == "rings":
        return 0.5 + 0.5 * np.sin(f * np.hypot(u, v) + ph[0])
    raise SchemaError(f"unknown texture kind {kind!r}; valid kinds: {', '.join(TEXTURE_KINDS)}")


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership of unit-frame points ``x, y`` (radius ~1) in ``shape``; bool, shape of ``x``."""
    rho = np.hypot(x, y)
    if shape == "disc":
        return rho < 0.9
    if shape == "ring":
        return (rho < 0.95) & (rho > 0.55)
    if shape == "crescent":
        return (rho < 0.95) & (np.hypot(x - 0.45, y) > 0.75)
    if shape == "cross":
        ax, ay = np.abs(x), np.abs(y)
        return ((ax < 0.3) & (ay < 0.95)) | ((ay < 0.3) & (ax < 0.95))
    if shape in ("square", "triangle", "hexagon", "star"):
        n = {"square": 4, "triangle": 3, "hexagon": 6, "star": 5}[shape]
        radius = {"square": 1.05, "triangle": 1.0, "hexagon": 0.92, "star": 1.0}[shape]
        # Fold the angle into one sector [-pi/n, pi/n] around a vertex: regular shapes
        # then reduce to one half-plane test.
        sector = 2 * np.pi / n
        phi = np.abs((np.arctan2(y, x) + sector / 2) % sector - sector / 2)
        px, py = rho * np.cos(phi), rho * np.sin(phi)
        if shape != "star":
            return px < radius * np.cos(np.pi / n)
        # Star edge from the tip (1, 0) to the inner vertex at angle pi/5, radius 0.45.
        ix, iy = 0.45 * np.cos(np.pi / n), 0.45 * np.sin(np.pi / n)
        return (px - radius) * iy - py * (ix - radius) < 0
    raise SchemaError(f"unknown shape {shape!r}; valid shapes: {', '.join(SHAPE_NAMES)}")


def _place_object(rng: np.random.Generator, cls: int, style: ClassStyle, height: int, width: int,
                  size_range: tuple[float, float]) -> _Object:
    """Random size, centre (inside the central 80 %), rotation and aspect for one object."""
    size = rng.uniform(*size_range) * min(height, width)  # nominal diameter, pixels
    r = size / 2
    aspect = rng.uniform(0.85, 1.15)
    theta = rng.uniform(0, 2 * np.pi)
    cx = rng.uniform(0.1, 0.9) * width
    cy = rng.uniform(0.1, 0.9) * height
    reach = 1.1 * r * max(aspect, 1 / aspect)
    x0, x1 = max(0, int(cx - reach)), min(width, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(height, int(np.ceil(cy + reach)) + 1)
    xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - cx
    ys = np.arange(y0, y1, dtype=np.float32) + 0.5 - cy
    dx, dy = np.meshgrid(xs, ys)
    c, s = np.cos(theta), np.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    mask = _shape_mask(style.shape, u / (r * aspect), v * aspect / r)
    return _Object(cls, style, (slice(y0, y1), slice(x0, x1)), mask, u, v)


def _owner_map(objects: list[_Object], keep: list[int], height: int, width: int) -> np.ndarray:
    """``(H, W) int32``: 1-based position in ``keep`` of the top object at each pixel."""
    owner = np.zeros((height, width), np.int32)
    for pos, i in enumerate(keep, start=1):
        o = objects[i]
        owner[o.window][o.mask] = pos
    return owner


def _void_band(owner: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label (the image edge is not a boundary)."""
    diff = np.zeros(owner.shape, bool)
    ne = owner[1:] != owner[:-1]
    diff[1:] |= ne
    diff[:-1] |= ne
    ne = owner[:, 1:] != owner[:, :-1]
    diff[:, 1:] |= ne
    diff[:, :-1] |= ne
    return diff & (owner > 0)


def _paint_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(H, W, 3) float32`` in 0..1: two desaturated colours mixed by a random texture."""
    hue = rng.uniform()
    c1 = _hsv(hue, rng.uniform(0.03, 0.3), rng.uniform(0.35, 0.85))
    c2 = _hsv(hue + rng.uniform(-0.15, 0.15), rng.uniform(0.0, 0.3), rng.uniform(0.25, 0.9))
    dx, dy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    theta = rng.uniform(0, 2 * np.pi)
    u, v = np.cos(theta) * dx + np.sin(theta) * dy, -np.sin(theta) * dx + np.cos(theta) * dy
    kind = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
    t = _texture(kind, u, v, rng.uniform(6, 20), rng)
    # Large-scale blotches on top of the pattern so backgrounds vary within an image too.
    t = 0.6 * t + 0.4 * _smooth_noise(rng, height, width, rng.uniform(12, 40))
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def _paint_object(rng: np.random.Generator, o: _Object) -> np.ndarray:
    """``(h, w, 3) float32`` appearance of one object over its window, with colour jitter."""
    st = o.style
    hue = st.hue + rng.uniform(-0.03, 0.03)
    sat = st.saturation + rng.uniform(-0.08, 0.08)
    val = st.value + rng.uniform(-0.08, 0.08)
    c1 = _hsv(hue, sat, val)
    c2 = _hsv(hue + 0.04, sat * 0.85, val * 0.55)
    period = st.period * rng.uniform(0.85, 1.15)
    t = _texture(st.texture, o.u, o.v, period, rng) * (st.contrast * rng.uniform(0.8, 1.2))
    return c1 * (1 - t[..., None]) + c2 * t[..., None]


def render_scene(seed: int, index: int, *, height: int = 96, width: int = 128,
                 vocabulary: Vocabulary | None = None, max_objects: int = 4,
                 boundary: bool = False, size_range: tuple[float, float] = (0.15, 0.45),
                 min_visible_area: int = 20) -> Scene:
    """Render scene ``index`` of ``seed``; deterministic in ``(seed, index)`` only.

    ``1..max_objects`` objects of classes drawn from ``vocabulary.foreground`` (default
    ``shapes_vocabulary()``); nominal diameter ``size_range`` times ``min(H, W)``. Later objects
    occlude earlier ones; an object whose visible area (its non-void area with ``boundary``)
    is below ``min_visible_area`` px is dropped. Returns a ``Scene`` with at least one instance.
    """
    vocabulary = shapes_vocabulary() if vocabulary is None else vocabulary
    if vocabulary.background is None or not vocabulary.foreground:
        raise SchemaError(f"render_scene: vocabulary {vocabulary.names} needs a background class "
                          f"and at least one foreground class")
    if not 1 <= max_objects <= 254:
        raise SchemaError(f"render_scene: max_objects={max_objects}; expected 1..254")
    if height < 8 or width < 8:
        raise SchemaError(f"render_scene: image size {width}x{height}; expected at least 8x8")
    rng = np.random.default_rng((seed, index))
    foreground = vocabulary.foreground
    for _attempt in range(100):
        n = int(rng.integers(1, max_objects + 1))
        picks = rng.integers(len(foreground), size=n)
        objects = [_place_object(rng, foreground[j], class_style(int(j)), height, width, size_range)
                   for j in picks]
        keep = list(range(n))
        while keep:
            owner = _owner_map(objects, keep, height, width)
            counted = owner[~_void_band(owner)] if boundary else owner
            area = np.bincount(counted.ravel(), minlength=len(keep) + 1)[1:]
            if area.min() >= min_visible_area:
                break
            # Drop one at a time: removing an object can only reveal the ones below it.
            del keep[int(np.argmin(area))]
        if keep:
            break
    else:
        raise SchemaError(f"render_scene(seed={seed}, index={index}): no object kept "
                          f"{min_visible_area} visible pixels in 100 tries at {width}x{height}")

    image = _paint_background(rng, height, width)
    for i in keep:
        o = objects[i]
        patch = image[o.window]
        patch[o.mask] = _paint_object(rng, o)[o.mask]
    image += rng.normal(0, 0.015, image.shape).astype(np.float32)  # sensor noise
    image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

    classes = np.asarray([objects[i].cls for i in keep], np.int64)
    visible = owner.astype(np.uint8)
    lut = np.concatenate([[vocabulary.background], classes]).astype(np.uint8)
    semantic = lut[visible]
    instances = visible.copy()
    if boundary:
        band = _void_band(owner)
        semantic[band] = IGNORE
        instances[band] = IGNORE
    return Scene(image, semantic, instances, classes, visible)


# --------------------------------------------------------------------------- writing


def _write_bytes(path: Path, data: bytes) -> None:
    # Write then rename, so a reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _png_bytes(index_map: np.ndarray) -> bytes:
    img = Image.fromarray(index_map, "P")
    img.putpalette(VOC_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """0-based inclusive ``(col0, row0, col1, row1)`` of a non-empty bool mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _voc_xml(image_id: str, scene: Scene, vocabulary: Vocabulary) -> bytes:
    h, w = scene.semantic.shape
    lines = ["<annotation>", "\t<folder>VOC2012</folder>", f"\t<filename>{image_id}.jpg</filename>",
             "\t<source><database>weaklabels shapes</database></source>",
             f"\t<size><width>{w}</width><height>{h}</height><depth>3</depth></size>",
             "\t<segmented>1</segmented>"]
    for k, cls in enumerate(scene.instance_classes, start=1):
        m = scene.visible_instances == k
        c0, r0, c1, r1 = _tight_box(m)
        truncated = int(c0 == 0 or r0 == 0 or c1 == w - 1 or r1 == h - 1)
        # VOC boxes are 1-based inclusive: column c (0-based) is written as c + 1.
        lines += ["\t<object>", f"\t\t<name>{escape(vocabulary.names[int(cls)])}</name>",
                  "\t\t<pose>Unspecified</pose>", f"\t\t<truncated>{truncated}</truncated>",
                  "\t\t<difficult>0</difficult>",
                  f"\t\t<bndbox><xmin>{c0 + 1}</xmin><ymin>{r0 + 1}</ymin>"
                  f"<xmax>{c1 + 1}</xmax><ymax>{r1 + 1}</ymax></bndbox>", "\t</object>"]
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode()


def _drop_collinear(path: np.ndarray) -> np.ndarray:
    """A closed ``(K, 2)`` path (first point == last) without points on a straight run."""
    pts = path[:-1]
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
    pts = pts[np.abs(cross) > 1e-9]
    return np.concatenate([pts, pts[:1]]) if len(pts) else pts


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` (pixel-edge coordinates) of a bool mask.

    One polygon per 4-connected component. Holes are joined to their component's outline by
    a doubled "bridge" edge, which cancels under the even-odd fill pycocotools uses, so a ring
    stays a ring.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    labels, _ = ndimage.label(mask)
    polygons = []
    for sl_index, sl in enumerate(ndimage.find_objects(labels), start=1):
        comp = np.pad(labels[sl] == sl_index, 1)
        contours = [_drop_collinear(c) for c in
                    find_contours(comp.astype(np.float32), 0.5, fully_connected="low")]
        contours = [c for c in contours if len(c) >= 4]  # closed: >= 3 distinct points
        if not contours:
            continue
        # The outline is the contour with the largest extent; the others are holes.
        contours.sort(key=lambda c: -np.ptp(c[:, 0]) * np.ptp(c[:, 1]))
        path = [contours[0]]
        for hole in contours[1:]:
            path += [hole, contours[0][:1]]
        rc = np.concatenate(path)
        # find_contours gives (row, col) in the padded pixel grid with pixel centres at
        # integers: shift by the pad and by half a pixel into pixel-edge coordinates.
        xy = np.stack([rc[:, 1] - 1 + 0.5 + sl[1].start, rc[:, 0] - 1 + 0.5 + sl[0].start], 1)
        polygons.append([round(float(t), 2) for t in xy.ravel()])
    return polygons


def _coco_annotations(scene: Scene, image_num: int, first_id: int) -> list[dict]:
    anns = []
    for k, cls in enumerate(scene.instance_classes, start=1):
        m = scene.visible_instances == k
        c0, r0, c1, r1 = _tight_box(m)
        anns.append({
            "id": first_id + len(anns), "image_id": image_num,
            "category_id": coco_category_id(int(cls)),
            "segmentation": mask_polygons(m), "area": float(m.sum()),
            "bbox": [float(c0), float(r0), float(c1 - c0 + 1), float(r1 - r0 + 1)],
            "iscrowd": 0,
        })
    return anns


def coco_category_id(cls: int) -> int:
    """The COCO category id written for class index ``cls``: ``2 * cls + 1`` (non-contiguous)."""
    return 2 * cls + 1


def _split(num_images: int, seed: int, val_fraction: float) -> np.ndarray:
    """``(num_images,) bool``: True for validation images; a seeded, fixed-size draw."""
    if not 0.0 <= val_fraction <= 1.0:
        raise SchemaError(f"write_shapes: val_fraction={val_fraction}; expected 0..1")
    n_val = int(round(num_images * val_fraction))
    if num_images >= 2 and 0 < val_fraction < 1:
        n_val = min(max(n_val, 1), num_images - 1)  # both splits non-empty
    is_val = np.zeros(num_images, bool)
    perm = np.random.default_rng((seed, 0x5B117)).permutation(num_images)
    is_val[perm[:n_val]] = True
    return is_val


def write_shapes(out_dir: str | Path, num_images: int, seed: int = 0, *, height: int = 96,
                 width: int = 128, vocabulary: Vocabulary | None = None,
                 val_fraction: float = 0.25, boundary: bool = False,
                 on_progress: Callable[[int], None] | None = None,
                 max_objects: int = 4) -> Path:
    """Write ``num_images`` scenes as a PASCAL-VOC-layout dataset plus COCO instance JSON.

    Layout: ``out_dir/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,
    Annotations,ImageSets/Segmentation}`` and ``class_names.txt``; ``out_dir/annotations/
    instances_{train,val}.json`` (COCO image id = scene index + 1, category id
    ``coco_category_id``). Image ids are ``shapes_000000``, .... ``on_progress(done)`` is called
    after each image with the number written so far. Returns the ``VOC2012`` folder.
    """
    if num_images < 1:
        raise SchemaError(f"write_shapes: num_images={num_images}; expected at least 1")
    vocabulary = shapes_vocabulary() if vocabulary is None else vocabulary
    out_dir = Path(out_dir)
    root = out_dir / "VOCdevkit" / "VOC2012"
    dirs = {name: root / name for name in
            ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations")}
    for d in (*dirs.values(), root / "ImageSets" / "Segmentation", out_dir / "annotations"):
        d.mkdir(parents=True, exist_ok=True)

    is_val = _split(num_images, seed, val_fraction)
    ids = [f"shapes_{i:06d}" for i in range(num_images)]
    coco = {split: {"images": [], "annotations": []} for split in ("train", "val")}
    next_ann = 1
    for i, image_id in enumerate(ids):
        scene = render_scene(seed, i, height=height, width=width, vocabulary=vocabulary,
                             boundary=boundary, max_objects=max_objects)
        _write_bytes(dirs["JPEGImages"] / f"{image_id}.jpg", _jpeg_bytes(scene.image))
        _write_bytes(dirs["SegmentationClass"] / f"{image_id}.png", _png_bytes(scene.semantic))
        _write_bytes(dirs["SegmentationObject"] / f"{image_id}.png", _png_bytes(scene.instances))
        _write_bytes(dirs["Annotations"] / f"{image_id}.xml", _voc_xml(image_id, scene, vocabulary))
        split = coco["val" if is_val[i] else "train"]
        split["images"].append({"id": i + 1, "file_name": f"{image_id}.jpg",
                                "width": width, "height": height})
        anns = _coco_annotations(scene, i + 1, next_ann)
        next_ann += len(anns)
        split["annotations"].extend(anns)
        if on_progress is not None:
            on_progress(i + 1)

    sets = root / "ImageSets" / "Segmentation"
    train = [x for x, v in zip(ids, is_val) if not v]
    val = [x for x, v in zip(ids, is_val) if v]
    for name, members in (("train", train), ("val", val), ("trainval", ids)):
        _write_bytes(sets / f"{name}.txt", "".join(f"{x}\n" for x in members).encode())
    _write_bytes(root / "class_names.txt", "".join(f"{n}\n" for n in vocabulary.names).encode())
    categories = [{"id": coco_category_id(k), "name": vocabulary.names[k], "supercategory": "shape"}
                  for k in vocabulary.foreground]
    for split, content in coco.items():
        doc = {"info": {"description": "weaklabels shapes", "seed": seed},
               "images": content["images"], "annotations": content["annotations"],
               "categories": categories}
        _write_bytes(out_dir / "annotations" / f"instances_{split}.json",
                     json.dumps(doc, separators=(",", ":")).encode())
    logger.info("wrote %d shapes scenes (%d train, %d val) to %s", num_images, len(train), len(val), root)
    return root
