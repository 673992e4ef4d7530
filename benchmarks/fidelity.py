"""Fidelity of every weak-label protocol on the 2,000 shared VOC masks, with the
human What's-the-Point clicks for comparison.

    python benchmarks/fidelity.py [--data PATH] [--limit N] [--fit-human]

Per protocol (``weaklabels.fidelity``): pixel precision against the full mask
(100% for synthesis), coverage (labelled / non-void pixels), the share of
(image, class) pairs with a label, and for points the distance from each point
to the nearest human click of its class over sqrt(class area). The human clicks
themselves are measured the same way (``points (human clicks)``).

``--fit-human`` re-derives ``HUMAN_CLEARANCE_HIST`` (weaklabels/synth/points.py):
the histogram of clearance(click) / max clearance of the class region for the
clicks that land on their own class.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from weaklabels.fidelity import measure, table
from weaklabels.sources.clicks import ClickAnnotations
from weaklabels.sources.voc import read_voc
from weaklabels.synth import synthesize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"

PROTOCOLS = {
    "tags": ("tags", {}),
    "boxes": ("boxes", {}),
    "points center": ("points", {}),
    "points random": ("points", {"placement": "random"}),
    "points human-like": ("points", {"placement": "human"}),
    "points center +bg": ("points", {"background": True}),
    "scribbles 1.0": ("scribbles", {}),
    "scribbles 0.8": ("scribbles", {"length_ratio": 0.8}),
    "scribbles 0.5": ("scribbles", {"length_ratio": 0.5}),
    "scribbles 0.3": ("scribbles", {"length_ratio": 0.3}),
    "scribbles 0.0": ("scribbles", {"length_ratio": 0.0}),
}


def fit_human(source, clicks: ClickAnnotations) -> list[float]:
    rel = []
    for i in range(len(source)):
        s = clicks.attach(source[i])
        m = s.semantic.array
        for (x, y), c in zip(s.points.xy, s.points.classes):
            r, col = int(y), int(x)
            if m[r, col] != c:
                continue
            d = ndimage.distance_transform_edt(np.pad(m == c, 1))[1:-1, 1:-1]
            rel.append(d[r, col] / d.max())
    hist, _ = np.histogram(rel, bins=10, range=(0, 1))
    print(f"{len(rel)} clicks on their own class")
    return (hist / hist.sum()).round(4).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder (default {DEFAULT_DATA})")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--fit-human", action="store_true", help="re-derive HUMAN_CLEARANCE_HIST and exit")
    args = ap.parse_args()
    masks, points = args.data / "voc-masks", args.data / "voc-points"
    if not masks.is_dir() or not points.is_dir():
        sys.exit(f"error: {masks} or {points} is missing (pass --data PATH to the shared data folder)")
    source = read_voc(masks, "sample")
    if args.limit:
        source.ids = source.ids[: args.limit]
    clicks = ClickAnnotations(points / "whats_the_point_clicks.json")
    if args.fit_human:
        print(json.dumps({"human_clearance_hist": fit_human(source, clicks)}))
        return
    samples = [source[i] for i in range(len(source))]  # decode once for every protocol
    rows, seconds = {}, {}
    for name, (kind, opts) in PROTOCOLS.items():
        t0 = time.perf_counter()
        f = measure(samples, lambda s, k=kind, o=opts: synthesize(s, k, seed=0, **o), kind, clicks.attach)
        seconds[name] = time.perf_counter() - t0
        rows[name] = f.to_dict()
    f = measure(samples, lambda s: synthesize(clicks.attach(s), "points", given=True), "points")
    rows["points (human clicks)"] = f.to_dict()
    print(f"{len(samples):,} VOC masks from {masks}; percentages except click_distance_median")
    print(table(rows))
    print(json.dumps({"num_images": len(samples), "protocols": rows}))


if __name__ == "__main__":
    main()
