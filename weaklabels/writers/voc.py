"""VOC-style writer (``--format voc``), the layout SPML's data loaders read:

* ``JPEGImages/{id}.jpg``         the source image bytes, unchanged
* ``WeakLabels/{id}.png``         palette PNG weak label map
* ``Regions/{id}.png``            16-bit region ids (when computed)
* ``SegmentationClass/{id}.png``  full mask (evaluation splits only)
* ``{split}.txt``                 one line per image: ``image label [regions]``, paths
  relative to the output folder (SPML's training list)
* ``{split}_gt.txt``              evaluation splits: ``image gt`` per line (SPML's evaluation list)

In masks-only datasets there is no image: lines then start with ``-``.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

from weaklabels.errors import SchemaError, UnsafePathError
from weaklabels.types import Vocabulary
from weaklabels.writers.base import Converted
from weaklabels.writers.png import encode_label_png, encode_regions_png

_DIRS = ("JPEGImages", "WeakLabels", "Regions", "SegmentationClass")


def _check_unique(split: str, lists: list[Path]) -> None:
    """Two items with one id would have written the same files: the later one won silently."""
    seen = Counter(line.split()[1] for p in lists for line in p.read_text().splitlines())
    dup = sorted(Path(k).stem for k, n in seen.items() if n > 1)
    if dup:
        raise SchemaError(f"split {split!r}: image ids {dup[:5]}{' ...' if len(dup) > 5 else ''} occur more than "
                          f"once; --format voc names files by image id, so ids must be unique")


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VOCWriter:
    format = "voc"

    def __init__(self, vocabulary: Vocabulary, kind: str):
        self.vocabulary, self.kind = vocabulary, kind

    @staticmethod
    def _list(partial: Path, split: str, shard: int) -> Path:
        return partial / "lists" / f"{split}-{shard:05d}.txt"

    def check(self, item: Converted) -> None:
        """The image id names files here and fills space-separated list lines: it must be a plain
        file name (ids from HF datasets or COCO are not checked by their readers)."""
        iid = item.sample.image_id
        if (not iid or iid in (".", "..") or iid.startswith("-") or len(iid) > 200
                or any(c in iid for c in "/\\") or any(c.isspace() or not c.isprintable() for c in iid)):
            raise UnsafePathError(f"image {iid!r}: --format voc uses the image id as a file name; expected "
                                  f"a plain name (no path separator, whitespace or control character, "
                                  f"not '.' or '..', at most 200 characters)")

    def shard_done(self, partial: Path, split: str, shard: int, num_shards: int) -> bool:
        return self._list(partial, split, shard).is_file()

    def write_shard(self, partial: Path, split: str, shard: int, num_shards: int,
                    items: list[Converted]) -> None:
        palette = self.vocabulary.palette()
        for d in _DIRS + ("lists",):
            (partial / d).mkdir(parents=True, exist_ok=True)
        lines, gt_lines = [], []
        for it in items:
            s = it.sample
            image = "-"
            if s.image is not None:
                ext = Path(s.image.path).suffix if s.image.path else ".jpg"
                image = f"JPEGImages/{s.image_id}{ext or '.jpg'}"
                _write(partial / image, s.image.read_bytes())
            label = f"WeakLabels/{s.image_id}.png"
            _write(partial / label, encode_label_png(it.weak_label, palette))
            parts = [image, label]
            if it.regions is not None:
                parts.append(f"Regions/{s.image_id}.png")
                _write(partial / parts[-1], encode_regions_png(it.regions))
            if it.gt is not None:
                gt = f"SegmentationClass/{s.image_id}.png"
                _write(partial / gt, encode_label_png(it.gt, palette))
                gt_lines.append(f"{image} {gt}")
            lines.append(" ".join(parts))
        if gt_lines:
            _write(self._list(partial, split + "_gt", shard), ("\n".join(gt_lines) + "\n").encode())
        _write(self._list(partial, split, shard), ("\n".join(lines) + "\n" if lines else "").encode())

    def finalize(self, partial: Path, out: Path, splits: dict[str, int]) -> dict[str, str]:
        for d in _DIRS:
            src = partial / d
            if src.is_dir() and any(src.iterdir()):
                (out / d).mkdir(exist_ok=True)
                for f in src.iterdir():
                    os.replace(f, out / d / f.name)
        result = {}
        for split in splits:
            for name in (split, split + "_gt"):
                parts = sorted((partial / "lists").glob(f"{name}-[0-9]*.txt"))
                if not parts and name != split:
                    continue
                if name == split:
                    _check_unique(split, parts)
                with open(out / f"{name}.txt", "w") as dst:
                    for p in parts:
                        dst.write(p.read_text())
            result[split] = f"{split}.txt"
        shutil.rmtree(partial / "lists", ignore_errors=True)
        return result
