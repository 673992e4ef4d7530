"""Pseudo-label quality of a finished run under several dense-CRF settings (a grid search).

    python benchmarks/crf_sweep.py RUN_DIR [--images 128] [--weights 4 10 20] [--rgb 3 8 13 20 30 45]
                                   [--xy 67]

RUN_DIR: a finished toy run of a recipe whose pseudo labels come from the stage-1 head (scribbles,
points, boxes; e.g. ``runs/toy_bench/seed0/toy_scribbles``). For its first ``--images`` training
images the scores before the CRF (head probabilities, per-class max, absent classes zeroed, random
walk, box constraint: ``spml_train.pseudo.labels.pseudo_probs`` with the run's own settings) are
computed once, then the CRF runs with every bilateral (weight, rgb std) pair of the grid (the
Gaussian kernel and the iterations as the run's). Reports the labels' mIoU against the ground truth
the toy training split carries - the number to choose a CRF by; the run's validation set is not
used. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image


def main() -> None:
    from omegaconf import OmegaConf

    from spml_train.data import normalize
    from spml_train.engine import load_trained
    from spml_train.evaluate import confusion, scores
    from spml_train.pipeline import pseudo_params, stage_dirs
    from spml_train.pseudo.labels import pseudo_probs, refine, weak_constraints
    from weaklabels.types import Vocabulary

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--images", type=int, default=128, help="training images scored (0: all)")
    ap.add_argument("--weights", type=float, nargs="+", default=[4.0, 10.0, 20.0], help="bilateral weights")
    ap.add_argument("--rgb", type=float, nargs="+", default=[3.0, 8.0, 13.0, 20.0, 30.0, 45.0],
                    help="bilateral rgb stds")
    ap.add_argument("--xy", type=float, nargs="+", default=[67.0], help="bilateral xy stds")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    kind = cfg.data.kind
    if kind not in ("scribbles", "points", "boxes"):
        raise SystemExit(f"{args.run_dir}: a {kind!r} run; the sweep scores head-based pseudo labels "
                         f"(scribbles, points, boxes)")
    dirs = stage_dirs(args.run_dir)
    train = next((args.run_dir / "data").glob("shapes-*"), None) if cfg.data.shapes.num_train else None
    train = train / f"train_{kind}" if train else Path(cfg.data.train)
    vocab = Vocabulary.load(train / "vocabulary.json")
    C = len(vocab)
    device = torch.device("cpu")
    model = load_trained(cfg, C, dirs["stage1"], device).eval()
    params = pseudo_params(cfg, "head")
    grid = list(itertools.product(args.weights, args.xy, args.rgb))
    settings = [dataclasses.replace(params, crf=True, crf_params=dataclasses.replace(
        params.crf_params, bilateral_weight=w, bilateral_xy=xy, bilateral_rgb=rgb)) for w, xy, rgb in grid]
    conf = np.zeros((len(settings), C, C), np.int64)
    n, t0 = 0, time.perf_counter()
    for f in sorted((train / "data").glob(f"{cfg.data.train_split}-*.parquet")):
        for row in pq.read_table(f).to_pylist():
            if args.images and n >= args.images:
                break
            weak = np.array(Image.open(io.BytesIO(row["weak_label"]["bytes"])))
            rgb = np.array(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB"))
            if not row.get("gt"):
                raise SystemExit(f"{train}: item {row['image_id']!r} has no gt to score against")
            gt = np.array(Image.open(io.BytesIO(row["gt"]["bytes"])))
            present, allowed = weak_constraints(kind, row, weak, vocab, params.box_constraint)
            probs = pseudo_probs(model, normalize(rgb).to(device), present, params, num_classes=C,
                                 background=vocab.background, allowed=allowed)
            for k, p in enumerate(settings):
                conf[k] += confusion(refine(probs, rgb, p, allowed).argmax(0).numpy(), gt, C, vocab.ignore)
            n += 1
    names = list(vocab.names)
    rows = []
    for (w, xy, rgb), c in zip(grid, conf):
        rows.append({"bilateral_weight": w, "bilateral_xy": xy, "bilateral_rgb": rgb,
                     "label_miou": round(scores(c, names)["mIoU"], 2)})
        print(f"bilateral weight {w:5.1f}  xy {xy:5.1f}  rgb {rgb:5.1f}   label mIoU {rows[-1]['label_miou']:6.2f}")
    best = max(rows, key=lambda r: r["label_miou"])
    print(f"{n} images, {time.perf_counter() - t0:.0f} s; best: {best}")
    print(json.dumps({"run": str(args.run_dir), "images": n, "grid": rows, "best": best}))


if __name__ == "__main__":
    main()
