"""Typed, validated, immutable values for weakly annotated images.

Conventions (stated once, here):

* Coordinates are continuous pixel-edge floats: the pixel in column ``c`` and
  row ``r`` covers ``[c, c+1) x [r, r+1)``; its centre is ``(c + 0.5, r + 0.5)``.
  ``x`` is the column axis, ``y`` the row axis. An image of width ``W`` spans
  ``0 <= x <= W``.
* A box is ``(x0, y0, x1, y1)`` in those coordinates, ``x0 < x1`` and ``y0 < y1``.
  VOC XML's 1-based inclusive integers are converted by ``Boxes.from_voc_inclusive``
  and nowhere else; COCO's ``[x, y, w, h]`` by ``Boxes.from_xywh``.
* Label values: ``0 .. len(names)-1`` are classes, ``Vocabulary.unlabelled`` marks
  real image content without a label (254 by default), ``Vocabulary.ignore``
  marks padding and void (255). The two are never the same value.
* Masks are ``uint8`` arrays ``(H, W)``; instance masks are ``bool (N, H, W)``.

Every value checks itself when built and raises ``SchemaError`` naming the
record and the field. ``Sample.to_json`` / ``Sample.from_json`` round-trip
losslessly; the JSON carries ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weaklabels.errors import SchemaError

SCHEMA_VERSION = 1
IGNORE = 255
UNLABELLED = 254

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

WEAK_KINDS = ("tags", "boxes", "points", "scribbles")

def is_plain_id(name: str) -> bool:
    """An image id that can name a file and fill a space-separated list line (``--format voc``):
    no path separator, whitespace or control character, not ``.`` / ``..``, no leading ``-``, at
    most 200 characters."""
    return (bool(name) and name not in (".", "..") and not name.startswith("-") and len(name) <= 200
            and not any(c in name for c in "/\\") and not any(c.isspace() or not c.isprintable() for c in name))


# Names that mean the background class in a dataset's own class list (labelme writes
# ``_background_``, Detectron-style lists ``__background__``): ``Vocabulary.from_names`` decides
# with these, for every reader, which class is background.
BACKGROUND_NAMES = ("background", "_background_", "__background__")


def _voc_palette() -> tuple[int, ...]:
    # The standard VOC colour map: bits of the index spread over R, G, B.
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.extend((r, g, b))
    return tuple(palette)


VOC_PALETTE = _voc_palette()


def _fail(record: str | None, message: str) -> SchemaError:
    return SchemaError(f"{record}: {message}" if record else message)


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Class names and the special label values of a dataset.

    ``names[i]`` is the class with contiguous index ``i``. ``background`` is the
    index of the background class (``None`` when the dataset has none).
    ``source_ids[i]`` is the id the source dataset uses for class ``i`` (COCO's
    non-contiguous category ids; ``None`` for a class the source does not have,
    such as COCO's background). ``ignore`` and ``unlabelled`` are label values
    outside ``0 .. len(names)-1``.
    """

    names: tuple[str, ...]
    background: int | None = 0
    ignore: int = IGNORE
    unlabelled: int = UNLABELLED
    source_ids: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if self.source_ids is not None:
            object.__setattr__(self, "source_ids", tuple(self.source_ids))
        n = len(self.names)
        if n == 0:
            raise SchemaError("Vocabulary: names is empty; expected at least one class")
        bad = [x for x in self.names if not isinstance(x, str) or not x.strip()]
        if bad:
            raise SchemaError(f"Vocabulary: class names must be non-empty strings, got {bad!r}")
        dup = sorted({x for x in self.names if self.names.count(x) > 1})
        if dup:
            raise SchemaError(f"Vocabulary: duplicate class names {dup}")
        for what in ("ignore", "unlabelled"):
            v = getattr(self, what)
            if not isinstance(v, (int, np.integer)) or not 0 <= v <= 255:
                raise SchemaError(f"Vocabulary: {what}={v!r}; expected an integer in 0..255")
            if v < n:
                raise SchemaError(
                    f"Vocabulary: {what}={v} collides with class index {v} ({self.names[v]!r}); "
                    f"expected a value >= {n}")
        if self.ignore == self.unlabelled:
            raise SchemaError(
                f"Vocabulary: ignore and unlabelled are both {self.ignore}; they must differ")
        if self.background is not None and not 0 <= self.background < n:
            raise SchemaError(f"Vocabulary: background={self.background} is not a class index 0..{n - 1}")
        if self.source_ids is not None:
            if len(self.source_ids) != n:
                raise SchemaError(
                    f"Vocabulary: {len(self.source_ids)} source ids for {n} classes")
            known = [s for s in self.source_ids if s is not None]
            if len(set(known)) != len(known):
                raise SchemaError(f"Vocabulary: duplicate source ids in {self.source_ids}")

    # -- constructors
    @classmethod
    def voc(cls) -> Vocabulary:
        """The 21 PASCAL VOC classes, background = 0, source ids = indices."""
        return cls(VOC_CLASSES, source_ids=tuple(range(len(VOC_CLASSES))))

    @classmethod
    def from_names(cls, names: Iterable[str], *, source_ids: Sequence[int | None] | None = None) -> Vocabulary:
        """A vocabulary from a dataset's class names in index order (a class list file, a
        ``ClassLabel``, ``--class-names``). The class named by one of ``BACKGROUND_NAMES`` is
        background and is renamed ``background``; with none of them there is no background."""
        names = ["background" if n in BACKGROUND_NAMES else n for n in names]
        return cls(tuple(names), background=names.index("background") if "background" in names else None,
                   source_ids=source_ids)

    # -- lookups
    def __len__(self) -> int:
        return len(self.names)

    @property
    def foreground(self) -> tuple[int, ...]:
        """Indices of every class except background."""
        return tuple(i for i in range(len(self.names)) if i != self.background)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SchemaError(f"unknown class name {name!r}; valid names: {', '.join(self.names)}") from None

    def from_source_id(self, source_id: int) -> int:
        """Contiguous index of a source dataset's class id."""
        lut = self._source_lut()
        try:
            return lut[source_id]
        except KeyError:
            raise SchemaError(
                f"unknown source class id {source_id!r}; known ids: {sorted(lut)}") from None

    def _source_lut(self) -> dict[int, int]:
        ids = self.source_ids if self.source_ids is not None else range(len(self.names))
        return {s: i for i, s in enumerate(ids) if s is not None}

    def is_valid_label(self, value: int) -> bool:
        return 0 <= value < len(self.names) or value in (self.ignore, self.unlabelled)

    def palette(self) -> tuple[int, ...]:
        """768-entry RGB palette: VOC colours by index (ignore stays VOC's cream, 224,224,192)."""
        return VOC_PALETTE

    # -- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "names": list(self.names),
            "indices": {n: i for i, n in enumerate(self.names)},
            "background": self.background,
            "ignore": int(self.ignore),
            "unlabelled": int(self.unlabelled),
            "source_ids": None if self.source_ids is None else list(self.source_ids),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Vocabulary:
        _check_version(d, "Vocabulary")
        try:
            return cls(
                names=tuple(d["names"]), background=d["background"], ignore=d["ignore"],
                unlabelled=d["unlabelled"],
                source_ids=None if d.get("source_ids") is None else tuple(d["source_ids"]))
        except KeyError as err:
            raise SchemaError(f"Vocabulary JSON: missing key {err.args[0]!r}") from err

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (json.JSONDecodeError, SchemaError) as err:
            raise SchemaError(f"{path}: {err}") from err


def _check_version(d: Mapping[str, Any], what: str) -> None:
    v = d.get("schema_version")
    if v != SCHEMA_VERSION:
        raise SchemaError(f"{what} JSON: schema_version {v!r}; this library reads {SCHEMA_VERSION}")


# --------------------------------------------------------------------------- arrays


def _frozen(a: Any, dtype: Any, ndim: int, what: str, record: str | None,
            last: int | None = None) -> np.ndarray:
    try:
        arr = np.array(a, dtype=dtype, copy=True)
    except (TypeError, ValueError) as err:
        raise _fail(record, f"{what}: cannot be read as {np.dtype(dtype).name}: {err}") from err
    if arr.size == 0 and last is not None:
        arr = arr.reshape((0,) * (ndim - 1) + (last,))
    elif arr.size == 0 and ndim == 1:
        arr = arr.reshape(0)
    if arr.ndim != ndim or (last is not None and arr.shape[-1] != last):
        want = f"({'N, ' if ndim == 2 else ''}{last})" if last else f"{ndim}-D"
        raise _fail(record, f"{what}: shape {arr.shape}; expected {want}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise _fail(record, f"{what}: contains NaN or infinite values")
    arr.setflags(write=False)
    return arr


def _classes(a: Any, n: int, what: str, record: str | None) -> np.ndarray:
    arr = _frozen(a, np.int64, 1, what, record)
    if arr.shape[0] != n:
        raise _fail(record, f"{what}: {arr.shape[0]} values for {n} items")
    if (arr < 0).any():
        raise _fail(record, f"{what}: negative class index {int(arr.min())}")
    return arr


def _bools(a: Any, n: int, what: str, record: str | None) -> np.ndarray:
    if a is None:
        a = np.zeros(n, bool)
    arr = _frozen(a, bool, 1, what, record)
    if arr.shape[0] != n:
        raise _fail(record, f"{what}: {arr.shape[0]} values for {n} items")
    return arr


def _array_eq(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


class _ArrayValue:
    """Equality by value for frozen dataclasses holding numpy arrays."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if not _array_eq(a, b):
                    return False
            elif isinstance(a, tuple) and a and isinstance(a[0], np.ndarray):
                if len(a) != len(b) or not all(_array_eq(x, y) for x, y in zip(a, b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True, eq=False)
class ImageTags(_ArrayValue):
    """The set of foreground classes present in an image (sorted, unique)."""

    classes: np.ndarray
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        arr = _frozen(self.classes, np.int64, 1, "tags", self.record)
        if (arr < 0).any():
            raise _fail(self.record, f"tags: negative class index {int(arr.min())}")
        arr = np.unique(arr)
        arr.setflags(write=False)
        object.__setattr__(self, "classes", arr)

    def __len__(self) -> int:
        return int(self.classes.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> ImageTags:
        return cls(np.asarray(d["classes"], np.int64), record=record)


@dataclass(frozen=True, eq=False)
class Boxes(_ArrayValue):
    """Axis-aligned boxes ``(x0, y0, x1, y1)``, pixel-edge float coordinates.

    ``xyxy: (N, 4) float64``, ``classes: (N,) int64``; ``difficult`` and
    ``truncated`` are VOC's flags; ``crowd`` marks COCO crowd regions.
    """

    xyxy: np.ndarray
    classes: np.ndarray
    difficult: np.ndarray | None = None
    truncated: np.ndarray | None = None
    crowd: np.ndarray | None = None
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = self.record
        xyxy = _frozen(self.xyxy, np.float64, 2, "boxes", r, last=4)
        n = xyxy.shape[0]
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "classes", _classes(self.classes, n, "box classes", r))
        for name in ("difficult", "truncated", "crowd"):
            object.__setattr__(self, name, _bools(getattr(self, name), n, f"box {name}", r))
        bad = np.flatnonzero((xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]))
        if bad.size:
            raise _fail(r, f"box {int(bad[0])} = {xyxy[bad[0]].tolist()}: expected x0 < x1 and y0 < y1")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def from_voc_inclusive(cls, xmin_ymin_xmax_ymax: Any, classes: Any, **kw: Any) -> Boxes:
        """VOC XML boxes (1-based inclusive integer pixels) -> pixel-edge floats.

        Pixel ``xmin`` (1-based) is column ``xmin - 1`` whose left edge is
        ``xmin - 1``; pixel ``xmax`` (1-based) is column ``xmax - 1`` whose right
        edge is ``xmax``.
        """
        a = np.asarray(xmin_ymin_xmax_ymax, np.float64).reshape(-1, 4)
        xyxy = np.stack([a[:, 0] - 1, a[:, 1] - 1, a[:, 2], a[:, 3]], axis=1)
        return cls(xyxy, classes, **kw)

    @classmethod
    def from_xywh(cls, xywh: Any, classes: Any, **kw: Any) -> Boxes:
        """COCO ``[x, y, width, height]`` (already pixel-edge floats)."""
        a = np.asarray(xywh, np.float64).reshape(-1, 4)
        return cls(np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1), classes, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"xyxy": self.xyxy.tolist(), "classes": self.classes.tolist(),
                "difficult": self.difficult.tolist(), "truncated": self.truncated.tolist(),
                "crowd": self.crowd.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> Boxes:
        return cls(np.asarray(d["xyxy"], np.float64).reshape(-1, 4), d["classes"],
                   difficult=d.get("difficult"), truncated=d.get("truncated"),
                   crowd=d.get("crowd"), record=record)


@dataclass(frozen=True, eq=False)
class Points(_ArrayValue):
    """Labelled points ``xy: (N, 2) float64`` (pixel-edge coordinates), ``classes: (N,)``.

    The pixel a point labels is ``(floor(y), floor(x))``; an integer click at
    column ``c`` is stored as ``x = c + 0.5``.
    """

    xy: np.ndarray
    classes: np.ndarray
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        xy = _frozen(self.xy, np.float64, 2, "points", self.record, last=2)
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "classes", _classes(self.classes, xy.shape[0], "point classes", self.record))

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"xy": self.xy.tolist(), "classes": self.classes.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> Points:
        return cls(np.asarray(d["xy"], np.float64).reshape(-1, 2), d["classes"], record=record)


@dataclass(frozen=True, eq=False)
class Scribbles(_ArrayValue):
    """Labelled polylines: ``lines[k]: (M_k, 2) float64`` vertices (x, y), at least
    one vertex (a single vertex is a dot), ``classes: (K,)``, ``widths: (K,)`` in pixels."""

    lines: tuple[np.ndarray, ...]
    classes: np.ndarray
    widths: np.ndarray | None = None
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        r = self.record
        lines = tuple(_frozen(x, np.float64, 2, f"scribble {k}", r, last=2)
                      for k, x in enumerate(self.lines))
        for k, x in enumerate(lines):
            if x.shape[0] == 0:
                raise _fail(r, f"scribble {k}: no vertices; expected at least one")
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "classes", _classes(self.classes, len(lines), "scribble classes", r))
        widths = np.full(len(lines), 3.0) if self.widths is None else self.widths
        widths = _frozen(widths, np.float64, 1, "scribble widths", r)
        if widths.shape[0] != len(lines) or (widths <= 0).any():
            raise _fail(r, f"scribble widths {widths.tolist()}: expected {len(lines)} positive values")
        object.__setattr__(self, "widths", widths)

    def __len__(self) -> int:
        return len(self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": [x.tolist() for x in self.lines], "classes": self.classes.tolist(),
                "widths": self.widths.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> Scribbles:
        return cls(tuple(np.asarray(x, np.float64).reshape(-1, 2) for x in d["lines"]),
                   d["classes"], widths=d["widths"], record=record)


def _encode_array(a: np.ndarray) -> dict[str, Any]:
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "zlib_b64": base64.b64encode(zlib.compress(np.ascontiguousarray(a).tobytes(), 6)).decode()}


def _decode_array(d: Mapping[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(d["zlib_b64"]))
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


@dataclass(frozen=True, eq=False)
class SemanticMask(_ArrayValue):
    """Dense class map ``(H, W) uint8``: class indices, ``ignore`` for void."""

    array: np.ndarray
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = np.asarray(self.array)
        if a.ndim != 2:
            raise _fail(self.record, f"semantic mask: shape {a.shape}; expected (H, W)")
        if a.dtype != np.uint8:
            if a.size and (a.min() < 0 or a.max() > 255):
                raise _fail(self.record, f"semantic mask: values outside 0..255 ({a.min()}..{a.max()})")
            a = a.astype(np.uint8)
        a = a.copy() if a.flags.writeable else a
        a.setflags(write=False)
        object.__setattr__(self, "array", a)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape  # type: ignore[return-value]

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """``(256,) int64`` pixel count of every label value (computed once: the mask is immutable)."""
        if self.array.size < 2 ** 24:  # OpenCV counts in float32: exact below 2^24 per bin
            import cv2  # a histogram is 2x faster than np.bincount, which widens uint8 to intp first

            cv2.setNumThreads(1)  # its thread pool would fight worker processes for the cores
            c = cv2.calcHist([np.ascontiguousarray(self.array)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        else:
            c = np.bincount(self.array.ravel(), minlength=256)
        c.setflags(write=False)
        return c

    def to_dict(self) -> dict[str, Any]:
        return {"array": _encode_array(self.array)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> SemanticMask:
        return cls(_decode_array(d["array"]), record=record)


@dataclass(frozen=True, eq=False)
class InstanceMasks(_ArrayValue):
    """Per-instance masks ``(N, H, W) bool`` with ``classes: (N,)`` and ``crowd: (N,)``."""

    masks: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray | None = None
    record: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        m = np.asarray(self.masks)
        if m.ndim != 3:
            raise _fail(self.record, f"instance masks: shape {m.shape}; expected (N, H, W)")
        m = m.astype(bool, copy=True)
        m.setflags(write=False)
        object.__setattr__(self, "masks", m)
        object.__setattr__(self, "classes", _classes(self.classes, m.shape[0], "instance classes", self.record))
        object.__setattr__(self, "crowd", _bools(self.crowd, m.shape[0], "instance crowd", self.record))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"masks": _encode_array(np.packbits(self.masks, axis=-1)),
                "width": int(self.masks.shape[2]),
                "classes": self.classes.tolist(), "crowd": self.crowd.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], record: str | None = None) -> InstanceMasks:
        packed = _decode_array(d["masks"])
        masks = np.unpackbits(packed, axis=-1, count=int(d["width"])).astype(bool)
        return cls(masks, d["classes"], crowd=d["crowd"], record=record)


# --------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class ImageRef:
    """Where an image's encoded bytes come from: a file path, or the bytes themselves."""

    path: str | None = None
    data: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise SchemaError("ImageRef: give exactly one of path or data")

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        return Path(self.path).read_bytes()  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        if self.path is not None:
            return {"path": self.path}
        return {"data_b64": base64.b64encode(self.data).decode()}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageRef:
        if "path" in d:
            return cls(path=d["path"])
        return cls(data=base64.b64decode(d["data_b64"]))


_ANNOTATION_TYPES: dict[str, type] = {
    "tags": ImageTags, "boxes": Boxes, "points": Points, "scribbles": Scribbles,
    "semantic": SemanticMask, "instances": InstanceMasks,
}


@dataclass(frozen=True)
class Sample:
    """One image with its size, vocabulary and annotations.

    ``image`` is ``None`` in masks-only datasets. ``height`` and ``width`` are
    the image size in pixels; every annotation is checked against them and the
    vocabulary when the sample is built.
    """

    image_id: str
    height: int
    width: int
    vocabulary: Vocabulary
    image: ImageRef | None = None
    tags: ImageTags | None = None
    boxes: Boxes | None = None
    points: Points | None = None
    scribbles: Scribbles | None = None
    semantic: SemanticMask | None = None
    instances: InstanceMasks | None = None
    notes: tuple[str, ...] = ()  # problems a reader found that did not stop the item

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))
        self._validate(None)

    def _validate(self, changed: set[str] | None) -> None:
        """Check every field (``changed=None``) or only those named and what depends on them."""
        rid = f"image {self.image_id!r}"

        def check(name: str) -> bool:
            return changed is None or name in changed

        if not isinstance(self.image_id, str) or not self.image_id:
            raise SchemaError(f"Sample: image_id {self.image_id!r}; expected a non-empty string")
        if changed is not None and changed & {"image_id", "height", "width", "vocabulary"}:
            changed = None
        for what in ("height", "width") if changed is None else ():
            v = getattr(self, what)
            if not isinstance(v, (int, np.integer)) or v <= 0:
                raise _fail(rid, f"{what}={v!r}; expected a positive integer")
            object.__setattr__(self, what, int(v))
        h, w, voc = self.height, self.width, self.vocabulary
        n = len(voc)
        for name in ("tags", "boxes", "points", "scribbles", "instances"):
            ann = getattr(self, name)
            if ann is not None and check(name):
                if not isinstance(ann, _ANNOTATION_TYPES[name]):
                    raise _fail(rid, f"{name}: got {type(ann).__name__}; expected {_ANNOTATION_TYPES[name].__name__}")
                if ann.classes.size and ann.classes.max() >= n:
                    raise _fail(rid, f"{name}: class index {int(ann.classes.max())} outside the "
                                     f"vocabulary of {n} classes")
        if self.tags is not None and check("tags") and voc.background is not None and voc.background in self.tags.classes:
            raise _fail(rid, f"tags: background ({voc.background}) is never a tag")
        if self.boxes is not None and check("boxes") and len(self.boxes):
            b = self.boxes.xyxy
            out = np.flatnonzero((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > w) | (b[:, 3] > h))
            if out.size:
                raise _fail(rid, f"box {int(out[0])} = {b[out[0]].tolist()} leaves the {w}x{h} image")
        if self.points is not None and check("points") and len(self.points):
            p = self.points.xy
            out = np.flatnonzero((p[:, 0] < 0) | (p[:, 1] < 0) | (p[:, 0] >= w) | (p[:, 1] >= h))
            if out.size:
                raise _fail(rid, f"point {int(out[0])} = {p[out[0]].tolist()} outside the {w}x{h} image")
        if self.scribbles is not None and check("scribbles"):
            for k, line in enumerate(self.scribbles.lines):
                if (line[:, 0] < 0).any() or (line[:, 1] < 0).any() or (line[:, 0] > w).any() or (line[:, 1] > h).any():
                    raise _fail(rid, f"scribble {k} leaves the {w}x{h} image")
        if self.semantic is not None and check("semantic"):
            if self.semantic.shape != (h, w):
                raise _fail(rid, f"semantic mask is {self.semantic.shape[1]}x{self.semantic.shape[0]}; "
                                 f"image is {w}x{h}")
            present = np.flatnonzero(self.semantic.counts)
            bad = [int(v) for v in present if not (v < n or v == voc.ignore)]
            if bad:
                raise _fail(self.semantic.record or rid, f"semantic mask holds values {bad} outside the vocabulary "
                                 f"(0..{n - 1} and ignore={voc.ignore})")
        if self.instances is not None and check("instances") and self.instances.masks.shape[1:] != (h, w):
            s = self.instances.masks.shape
            raise _fail(rid, f"instance masks are {s[2]}x{s[1]}; image is {w}x{h}")

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    def replace(self, **changes: Any) -> Sample:
        """A copy with ``changes``; only the changed fields are validated again."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SchemaError(f"Sample.replace: unknown field(s) {sorted(unknown)}")
        new = object.__new__(Sample)
        for f in dataclasses.fields(self):
            object.__setattr__(new, f.name, changes.get(f.name, getattr(self, f.name)))
        object.__setattr__(new, "notes", tuple(new.notes))
        new._validate(set(changes))
        return new

    def weak_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in WEAK_KINDS if getattr(self, k) is not None)

    # -- JSON
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "image_id": self.image_id,
            "height": self.height, "width": self.width,
            "vocabulary": self.vocabulary.to_dict(),
            "image": None if self.image is None else self.image.to_dict(),
        }
        for name in _ANNOTATION_TYPES:
            ann = getattr(self, name)
            d[name] = None if ann is None else ann.to_dict()
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        _check_version(d, "Sample")
        rid = f"image {d.get('image_id')!r}"
        try:
            anns = {name: None if d.get(name) is None else t.from_dict(d[name], record=rid)
                    for name, t in _ANNOTATION_TYPES.items()}
            return cls(image_id=d["image_id"], height=d["height"], width=d["width"],
                       vocabulary=Vocabulary.from_dict(d["vocabulary"]),
                       image=None if d.get("image") is None else ImageRef.from_dict(d["image"]),
                       notes=tuple(d.get("notes", ())), **anns)
        except KeyError as err:
            raise SchemaError(f"{rid}: sample JSON misses key {err.args[0]!r}") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Sample:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise SchemaError(f"Sample JSON: not valid JSON: {err}") from err
        if not isinstance(d, dict):
            raise SchemaError(f"Sample JSON: expected an object, got {type(d).__name__}")
        return cls.from_dict(d)


def tags_of(classes: Iterable[int] | Sequence[int], vocabulary: Vocabulary, record: str | None = None) -> ImageTags:
    """Tags from a collection of class indices, dropping background."""
    bg = vocabulary.background
    return ImageTags(np.asarray([c for c in classes if c != bg], np.int64), record=record)
