"""Small converted datasets written straight as ``weaklabels convert``'s parquet shards (its
schema), for tests that need exact control over every pixel; ``conftest.py`` puts this folder on
``sys.path``."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from weaklabels.types import Vocabulary
from weaklabels.writers.hf import arrow_schema
from weaklabels.writers.png import encode_label_png, encode_regions_png


def png_rgb(img: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8), "RGB").save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def write_dataset(folder, split, vocab: Vocabulary, items: list[dict]) -> None:
    """items: dicts with image (H,W,3 uint8), weak (H,W), optional gt, regions, tags, image_id."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    vocab.save(folder / "vocabulary.json")
    pal = vocab.palette()
    rows = []
    for k, it in enumerate(items):
        h, w = it["weak"].shape
        rows.append({
            "image_id": it.get("image_id", f"im{k:03d}"),
            "image": png_rgb(it["image"]),
            "width": w, "height": h,
            "tags": list(it.get("tags", [])),
            "boxes": [], "points": [], "scribbles": [],
            "weak_label": {"bytes": encode_label_png(it["weak"].astype(np.uint8), pal), "path": None},
            "regions": None if it.get("regions") is None
            else {"bytes": encode_regions_png(it["regions"]), "path": None},
            "gt": None if it.get("gt") is None
            else {"bytes": encode_label_png(it["gt"].astype(np.uint8), pal), "path": None},
        })
    table = pa.Table.from_pylist(rows, schema=arrow_schema(vocab))
    pq.write_table(table, folder / "data" / f"{split}-00000-of-00001.parquet")


def vocab_of(n: int) -> Vocabulary:
    return Vocabulary(tuple(["background"] + [f"c{i}" for i in range(1, n)]))
