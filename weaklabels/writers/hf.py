"""HuggingFace dataset writer: parquet shards with every image and label map
embedded as PNG / JPEG bytes (never file paths), loadable offline with
``datasets.load_dataset("parquet", data_files=...)``.

Columns (the contract with the trainer and users' code):

=============  ==========================================================
image_id       string
image          Image: the source image bytes (null in masks-only datasets)
width, height  int32, pixels
tags           List(ClassLabel): foreground classes present
boxes          List({x0, y0, x1, y1: float64 pixel edges, label, difficult, truncated, crowd})
points         List({x, y: float64 pixel edges, label})
scribbles      List({xy: List(List(float64)) vertices, label, width: float64 px})
weak_label     Image: palette PNG, classes / unlabelled / ignore values as in vocabulary.json
regions        Image: 16-bit PNG region ids, or null
gt             Image: palette PNG full mask (null outside evaluation splits)
=============  ==========================================================

The HF feature schema travels in each shard's parquet metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from weaklabels.writers.base import Converted
from weaklabels.writers.png import encode_label_png, encode_regions_png
from weaklabels.types import Vocabulary


def _features_json(vocabulary: Vocabulary) -> dict:
    """The HF ``Features`` of a converted split, in the JSON form ``datasets`` stores in parquet
    metadata (written here so writing needs no ``datasets`` import: it costs 0.7 s at start-up)."""
    def value(dtype: str) -> dict:
        return {"dtype": dtype, "_type": "Value"}

    def lst(feature: dict) -> dict:
        return {"feature": feature, "_type": "List"}

    label = {"names": list(vocabulary.names), "_type": "ClassLabel"}
    image = {"_type": "Image"}
    return {
        "image_id": value("string"),
        "image": image,
        "width": value("int32"),
        "height": value("int32"),
        "tags": lst(label),
        "boxes": lst({"x0": value("float64"), "y0": value("float64"), "x1": value("float64"),
                      "y1": value("float64"), "label": label, "difficult": value("bool"),
                      "truncated": value("bool"), "crowd": value("bool")}),
        "points": lst({"x": value("float64"), "y": value("float64"), "label": label}),
        "scribbles": lst({"xy": lst(lst(value("float64"))), "label": label, "width": value("float64")}),
        "weak_label": image,
        "regions": image,
        # Present in every split (so splits share one schema and load together), null outside
        # evaluation splits.
        "gt": image,
    }


def arrow_schema(vocabulary: Vocabulary) -> pa.Schema:
    """The parquet schema of a converted split, with the HF features in its metadata."""
    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    f64, i64, b = pa.float64(), pa.int64(), pa.bool_()
    fields = [
        ("image_id", pa.string()), ("image", img), ("width", pa.int32()), ("height", pa.int32()),
        ("tags", pa.list_(i64)),
        ("boxes", pa.list_(pa.struct([("x0", f64), ("y0", f64), ("x1", f64), ("y1", f64), ("label", i64),
                                      ("difficult", b), ("truncated", b), ("crowd", b)]))),
        ("points", pa.list_(pa.struct([("x", f64), ("y", f64), ("label", i64)]))),
        ("scribbles", pa.list_(pa.struct([("xy", pa.list_(pa.list_(f64))), ("label", i64), ("width", f64)]))),
        ("weak_label", img), ("regions", img), ("gt", img),
    ]
    meta = {"huggingface": json.dumps({"info": {"features": _features_json(vocabulary)}})}
    return pa.schema(fields, metadata=meta)


def hf_features(vocabulary: Vocabulary):
    """The ``datasets.Features`` of a converted split (needs ``datasets``)."""
    from datasets import Features

    return Features.from_dict(_features_json(vocabulary))


def to_row(item: Converted, palette: tuple[int, ...]) -> dict:
    s = item.sample
    b, p, sc = s.boxes, s.points, s.scribbles
    row = {
        "image_id": s.image_id,
        "image": None if s.image is None else {"bytes": s.image.read_bytes(), "path": None},
        "width": s.width,
        "height": s.height,
        "tags": [] if s.tags is None else s.tags.classes.tolist(),
        "boxes": [] if b is None else [
            {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "label": c, "difficult": d, "truncated": t, "crowd": cr}
            for (x0, y0, x1, y1), c, d, t, cr in zip(b.xyxy.tolist(), b.classes.tolist(), b.difficult.tolist(),
                                                     b.truncated.tolist(), b.crowd.tolist())],
        "points": [] if p is None else [{"x": x, "y": y, "label": c}
                                        for (x, y), c in zip(p.xy.tolist(), p.classes.tolist())],
        "scribbles": [] if sc is None else [
            {"xy": ln.tolist(), "label": c, "width": w}
            for ln, c, w in zip(sc.lines, sc.classes.tolist(), sc.widths.tolist())],
        "weak_label": {"bytes": encode_label_png(item.weak_label, palette), "path": None},
        "regions": None if item.regions is None else {"bytes": encode_regions_png(item.regions), "path": None},
    }
    row["gt"] = None if item.gt is None else {"bytes": encode_label_png(item.gt, palette), "path": None}
    return row


def shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"


class HFWriter:
    format = "hf"

    def __init__(self, vocabulary: Vocabulary, kind: str):
        self.vocabulary, self.kind = vocabulary, kind
        self._schema: pa.Schema | None = None

    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = arrow_schema(self.vocabulary)
        return self._schema

    def check(self, item: Converted) -> None:
        """Every sample fits a parquet row."""

    def shard_done(self, partial: Path, split: str, shard: int, num_shards: int) -> bool:
        return (partial / "data" / shard_name(split, shard, num_shards)).is_file()

    def write_shard(self, partial: Path, split: str, shard: int, num_shards: int,
                    items: list[Converted]) -> None:
        palette = self.vocabulary.palette()
        rows = [to_row(it, palette) for it in items]
        table = pa.Table.from_pylist(rows, schema=self.schema())
        dest = partial / "data" / shard_name(split, shard, num_shards)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, dest)

    def finalize(self, partial: Path, out: Path, splits: dict[str, int]) -> dict[str, str]:
        """Move the shards into ``out/data``; ``splits``: items written per split. Shards left
        empty by skipped items are dropped (a 0-row parquet file breaks ``load_dataset``), and
        the rest renumbered so that ``-of-N`` stays true; a split with no rows has no entry."""
        (out / "data").mkdir(parents=True, exist_ok=True)
        result = {}
        for split in splits:
            shards = sorted((partial / "data").glob(f"{split}-[0-9]*-of-[0-9]*.parquet"))
            keep = [f for f in shards if pq.ParquetFile(f).metadata.num_rows > 0]
            for k, f in enumerate(keep):
                os.replace(f, out / "data" / shard_name(split, k, len(keep)))
            if keep:
                result[split] = f"data/{split}-*.parquet"
        return result
