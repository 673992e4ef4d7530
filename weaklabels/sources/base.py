"""What every source provides: a sized, indexable, lazy collection of Samples.

A source holds only an index (ids, file names, annotation records); decoding
happens in ``__getitem__``, one item at a time, so memory does not grow with
the dataset. Sources are picklable so worker processes can share them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from weaklabels.types import Sample, Vocabulary


@runtime_checkable
class Source(Protocol):
    name: str               # "voc", "coco", "hf", ...
    vocabulary: Vocabulary
    split: str

    def __len__(self) -> int: ...

    def image_id(self, index: int) -> str:
        """The id of item ``index`` without decoding it."""
        ...

    def __getitem__(self, index: int) -> Sample: ...

    def describe(self) -> dict:
        """Plain-JSON description of where the data came from (for cards and resume checks)."""
        ...

    def inputs(self) -> list[Path]:
        """The local files and folders this source reads (``convert`` refuses an output folder
        that is or holds one of them)."""
        ...

    def load_errors(self) -> list[tuple[str, str]]:
        """``(record, message)`` for records found invalid while indexing (not tied to one item)."""
        ...


def iter_samples(source: Source) -> Iterator[Sample]:
    for i in range(len(source)):
        yield source[i]
