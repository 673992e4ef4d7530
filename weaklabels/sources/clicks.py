"""What's-the-Point click annotations (Bearman et al., 2016).

Format: one JSON object ``{image_id: [{"x": float, "y": float, "cls": int,
"rank": int}, ...]}``; ``x`` is the column and ``y`` the row in pixel-index
coordinates (an integer is a pixel centre), ``cls`` a class index of the
vocabulary (VOC: 1..20; the background clicks derived from ScribbleSup use
0), ``rank`` 1 is an annotator's first click. Converted once to pixel-edge
coordinates (``+ 0.5``).

Clicks outside the image are dropped and reported; clicks on void (ignore) or
on another class in the full mask are kept (they are what the annotator did)
and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from weaklabels.errors import CorruptFileError, MissingFileError, SourceError
from weaklabels.types import Points, Sample


class ClickAnnotations:
    """Clicks of one or more What's-the-Point JSON files, looked up by image id."""

    kind = "points"

    def __init__(self, paths: str | Path | list[str | Path], *, max_rank: int | None = None):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        self.max_rank = max_rank
        self.clicks: dict[str, list[dict]] = {}
        for p in self.paths:
            try:
                data = json.loads(p.read_text())
            except FileNotFoundError as err:
                raise MissingFileError(f"click file {p} does not exist") from err
            except json.JSONDecodeError as err:
                raise CorruptFileError(f"{p}: not valid JSON: {err}") from err
            if not isinstance(data, dict):
                raise CorruptFileError(f"{p}: expected an object {{image_id: [clicks]}}, got {type(data).__name__}")
            for iid, clicks in data.items():
                if not isinstance(clicks, list):
                    raise CorruptFileError(f"{p}: image {iid!r}: expected a list of clicks")
                self.clicks.setdefault(str(iid), []).extend(clicks)

    def describe(self) -> dict:
        return {"annotations": "whats_the_point", "paths": [str(p) for p in self.paths], "max_rank": self.max_rank}

    def inputs(self) -> list[Path]:
        return list(self.paths)

    def attach(self, sample: Sample) -> Sample:
        rec = f"image {sample.image_id!r}"
        if sample.image_id not in self.clicks:
            raise SourceError(f"{rec}: no clicks in {', '.join(map(str, self.paths))}")
        xy, cls, notes = [], [], []
        n = len(sample.vocabulary)
        sem = None if sample.semantic is None else sample.semantic.array
        for k, c in enumerate(self.clicks[sample.image_id]):
            # JSON numbers only: a string such as "12" is a broken file, not a coordinate
            num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
            integer = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
            if not (isinstance(c, dict) and num(c.get("x")) and num(c.get("y")) and integer(c.get("cls"))
                    and integer(c.get("rank", 1))):
                raise SourceError(f"{rec}: click {k} {c!r} in {', '.join(map(str, self.paths))}: expected "
                                  f"numbers x and y, an integer cls and, if given, an integer rank")
            x, y, label = float(c["x"]) + 0.5, float(c["y"]) + 0.5, c["cls"]
            if self.max_rank is not None and c.get("rank", 1) > self.max_rank:
                continue
            if not 0 <= label < n:
                raise SourceError(f"{rec}: click {k} has class {label}, outside the vocabulary of {n}")
            if not (0 <= x < sample.width and 0 <= y < sample.height):
                notes.append(f"click {k} ({c['x']:.1f}, {c['y']:.1f}) of class {label} lies outside the "
                             f"{sample.width}x{sample.height} image: dropped")
                continue
            if sem is not None:
                v = int(sem[int(y), int(x)])
                if v == sample.vocabulary.ignore:
                    notes.append(f"click {k} of class {label} lies on void (ignore) in the full mask")
                elif v != label:
                    notes.append(f"click {k} of class {label} lies on class {v} in the full mask")
            xy.append((x, y))
            cls.append(label)
        pts = Points(np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(cls, np.int64), record=rec)
        return sample.replace(points=pts, notes=sample.notes + tuple(notes))
