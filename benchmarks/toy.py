"""The toy proof: every toy recipe from scratch, its wall time and the mIoU of each stage.

    python benchmarks/toy.py [--recipes toy_full toy_scribbles ...] [--out runs/toy_bench] [key=value ...]

Runs ``python -m spml_train recipe=NAME run.dir=OUT/NAME`` for each recipe, one after the other
(an existing run folder is deleted first, so nothing is cached), then reads each
``metrics.json``. Prints a table with the weak / full ratio of every stage against ``toy_full``
(when it is among the recipes) and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

RECIPES = ["toy_full", "toy_scribbles", "toy_points", "toy_boxes", "toy_tags"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=RECIPES)
    ap.add_argument("--out", default="runs/toy_bench", help="parent of the run folders")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every recipe")
    args = ap.parse_args()
    out = Path(args.out)
    results: dict[str, dict] = {}
    for name in args.recipes:
        run_dir = out / name
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [sys.executable, "-m", "spml_train", f"recipe={name}", f"run.dir={run_dir}", "run.progress=false",
               *args.overrides]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            results[name] = {"error": proc.returncode, "wall_s": wall}
            continue
        m = json.loads((run_dir / "metrics.json").read_text())
        stages = {k: v.get("mIoU") for k, v in m.get("stages", {}).items() if v.get("mIoU") is not None}
        labels = {k: v.get("label_miou") for k, v in m.get("stages", {}).items() if v.get("label_miou") is not None}
        results[name] = {"wall_s": round(wall, 1), "mIoU": round(m["mIoU"], 2),
                         "stages": {k: round(v, 2) for k, v in stages.items()},
                         "label_miou": {k: round(v, 2) for k, v in labels.items()}}
        print(f"{name:<14} {wall:7.1f} s  mIoU {m['mIoU']:6.2f}  stages {results[name]['stages']}  "
              f"labels {results[name]['label_miou']}", flush=True)
    full = results.get("toy_full", {}).get("mIoU")
    if full:
        for r in results.values():
            if "mIoU" in r:
                r["vs_full_x"] = round(r["mIoU"] / full, 3)
                r["stage1_vs_full_x"] = round(r["stages"].get("stage1", r["mIoU"]) / full, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
