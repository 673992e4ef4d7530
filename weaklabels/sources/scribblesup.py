"""ScribbleSup scribble annotations (Lin et al., 2016).

Format: one XML file per image, ``{image_id}.xml``, holding ``<polygon>``
elements, each with a ``<tag>`` class name and ``<point><X>..</X><Y>..</Y></point>``
vertices in pixel-index coordinates (converted once to pixel-edge, ``+ 0.5``).
Tags are matched to the vocabulary by name (case-insensitive; ``bg`` and
``__background__`` mean background). Vertices outside the image are clamped
to it and reported. Strokes get ``width`` pixels (SPML: 3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weaklabels.errors import SchemaError, SourceError
from weaklabels.sources.files import parse_xml
from weaklabels.types import BACKGROUND_NAMES, Sample, Scribbles

_BACKGROUND_NAMES = ("bg",) + BACKGROUND_NAMES  # a tag names background more loosely than a class list


class ScribbleSupAnnotations:
    kind = "scribbles"

    def __init__(self, folder: str | Path, *, width: float = 3.0):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"ScribbleSup folder {self.folder} does not exist or is not a folder")
        self.width = float(width)

    def describe(self) -> dict:
        return {"annotations": "scribblesup", "folder": str(self.folder), "width": self.width}

    def inputs(self) -> list[Path]:
        return [self.folder]

    def _class(self, name: str, sample: Sample, path: Path, k: int) -> int:
        voc = sample.vocabulary
        lname = name.strip().lower()
        if lname in _BACKGROUND_NAMES and voc.background is not None:
            return voc.background
        lower = [n.lower() for n in voc.names]
        if lname in lower:
            return lower.index(lname)
        raise SourceError(f"image {sample.image_id!r}: {path} polygon {k}: tag {name!r} is not a class; "
                          f"valid names: {', '.join(voc.names)}")

    def attach(self, sample: Sample) -> Sample:
        rec = f"image {sample.image_id!r}"
        path = self.folder / f"{sample.image_id}.xml"
        root = parse_xml(path, rec)
        lines, classes, notes = [], [], []
        for k, poly in enumerate(root.iter("polygon")):
            cls = self._class(poly.findtext("tag") or "", sample, path, k)
            pts = []
            for p in poly.iter("point"):
                try:
                    pts.append((float(p.findtext("X")) + 0.5, float(p.findtext("Y")) + 0.5))
                except (TypeError, ValueError) as err:
                    raise SourceError(f"{rec}: {path} polygon {k}: a <point> lacks numeric <X>/<Y>") from err
            if not pts:
                notes.append(f"{path.name} polygon {k} has no points: dropped")
                continue
            a = np.asarray(pts, np.float64)
            clamped = np.clip(a, [0, 0], [np.nextafter(sample.width, 0), np.nextafter(sample.height, 0)])
            if not np.array_equal(a, clamped):
                notes.append(f"{path.name} polygon {k}: vertices outside the {sample.width}x{sample.height} "
                             f"image clamped to it")
            lines.append(clamped)
            classes.append(cls)
        try:
            scr = Scribbles(tuple(lines), np.asarray(classes, np.int64),
                            widths=np.full(len(lines), self.width), record=rec)
        except SchemaError as err:
            raise SourceError(f"{path}: {err}") from err
        return sample.replace(scribbles=scr, notes=sample.notes + tuple(notes))
