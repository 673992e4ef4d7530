"""The item a writer receives and the interface every writer implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from weaklabels.types import Sample, Vocabulary


@dataclass(frozen=True)
class Converted:
    """One converted image: the sample with its weak annotation, the rasterised
    weak label map ``(H, W) uint8``, the ground truth for evaluation splits, and
    an optional region map ``(H, W)`` of ids < 65,536."""

    sample: Sample
    kind: str
    weak_label: np.ndarray
    gt: np.ndarray | None = None
    regions: np.ndarray | None = None


class ShardWriter(Protocol):
    format: str

    def __init__(self, vocabulary: Vocabulary, kind: str) -> None: ...

    def write_shard(self, partial: Path, split: str, shard: int, num_shards: int,
                    items: list[Converted]) -> None:
        """Write one shard under ``partial`` atomically (temporary name, then rename)."""
        ...

    def shard_done(self, partial: Path, split: str, shard: int, num_shards: int) -> bool: ...

    def check(self, item: Converted) -> None:
        """Raise for an item this format cannot hold (reported as that item's error)."""
        ...

    def finalize(self, partial: Path, out: Path, splits: dict[str, int]) -> list[str]:
        """Move finished shards from ``partial`` into ``out``; return the data file globs per split."""
        ...
