"""Human weak labels attached to a source's samples, instead of synthesis.

``human_annotations(kind, path)`` picks the reader by kind and path:

=========  ==========================================================
points     What's-the-Point click JSON file(s) (comma-separated paths)
scribbles  a folder of ScribbleSup XML files
boxes      a folder of VOC XML files, or a COCO instances JSON (``bbox``)
=========  ==========================================================

``Annotated(source, annotations)`` is a source whose samples carry them; the
reader's non-fatal findings (a click outside the image, on void, ...) travel
in ``Sample.notes`` and end in the output's ``warnings.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from weaklabels.errors import SchemaError
from weaklabels.sources.base import Source
from weaklabels.types import Sample


class HumanAnnotations(Protocol):
    kind: str

    def describe(self) -> dict: ...

    def inputs(self) -> list[Path]: ...

    def attach(self, sample: Sample) -> Sample: ...


def human_annotations(kind: str, path: str | Path, **opts) -> HumanAnnotations:
    from weaklabels.sources.clicks import ClickAnnotations
    from weaklabels.sources.coco import COCOBoxAnnotations
    from weaklabels.sources.scribblesup import ScribbleSupAnnotations
    from weaklabels.sources.voc import VOCBoxAnnotations

    p = str(path)
    if kind == "points":
        return ClickAnnotations([s for s in p.split(",") if s], max_rank=opts.get("max_rank"))
    if kind == "scribbles":
        return ScribbleSupAnnotations(p, width=opts.get("width", 3.0))
    if kind == "boxes":
        return COCOBoxAnnotations(p) if p.endswith(".json") else VOCBoxAnnotations(p)
    raise SchemaError(f"--from-annotations reads human points, scribbles or boxes, not {kind!r}")


class Annotated:
    """``source`` whose samples carry human annotations of one kind."""

    def __init__(self, source: Source, annotations: HumanAnnotations):
        self.source, self.annotations = source, annotations
        self.name, self.vocabulary, self.split = source.name, source.vocabulary, source.split

    def __len__(self) -> int:
        return len(self.source)

    def image_id(self, index: int) -> str:
        return self.source.image_id(index)

    def describe(self) -> dict:
        return {**self.source.describe(), "human": self.annotations.describe()}

    def inputs(self) -> list[Path]:
        return self.source.inputs() + self.annotations.inputs()

    def load_errors(self) -> list[tuple[str, str]]:
        return self.source.load_errors()

    def __getitem__(self, index: int) -> Sample:
        return self.annotations.attach(self.source[index])
