"""The toy proof: every toy recipe from scratch, its wall time and the mIoU of each stage.

    python benchmarks/toy.py [--recipes toy_full toy_scribbles ...] [--seeds 0 1 2] [--out runs/toy_bench]
                             [--resume] [--cached] [key=value ...]

Runs ``python -m spml_train recipe=NAME run.seed=S run.dir=OUT/seedS/NAME`` for each recipe and seed,
one after the other (an existing run folder is deleted first, so nothing is cached; ``--resume``
instead keeps the runs that finished with the same overrides - whatever code made them - so a long
sweep can be split or continued; ``--cached`` runs again in the existing folders, where the
pipeline's hash-keyed stages redo only what the configuration changed - a pseudo-label setting
reruns the pseudo labels and stage 2 on the cached stage 1 - and marks those wall times as
partial), then reads each ``metrics.json``.

One toy run's mIoU moves by a few points with the seed (the fully supervised bound most: its
validation set is 64 scenes), so the weak / full ratios are taken between the **means over the
seeds**; the table also gives each recipe's spread. Prints one line per run, a table, and as its
last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECIPES = ["toy_full", "toy_scribbles", "toy_points", "toy_boxes", "toy_tags"]


def run_one(name: str, seed: int, run_dir: Path, overrides: list[str], resume: bool, cached: bool = False) -> dict:
    """One recipe at one seed; ``{"wall_s", "mIoU", "stages", "label_miou", "cached"}``
    (``cached``: earlier stages were reused) or ``{"error", ...}``."""
    record = run_dir / "bench.json"
    if resume and record.is_file() and (run_dir / "metrics.json").is_file():
        done = json.loads(record.read_text())
        if done.get("overrides") == overrides:
            return {**_read(run_dir), "wall_s": done["wall_s"], "resumed": True, "cached": done.get("cached", False)}
    cached = cached and (run_dir / "stages.json").is_file()
    if not cached:
        shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "spml_train", f"recipe={name}", f"run.dir={run_dir}", f"run.seed={seed}",
           "run.progress=false", *overrides]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": proc.returncode, "wall_s": wall}
    record.write_text(json.dumps({"wall_s": wall, "overrides": overrides, "cached": cached}) + "\n")
    return {**_read(run_dir), "wall_s": wall, "cached": cached}


def _read(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    stages = m.get("stages", {})
    return {"mIoU": round(m["mIoU"], 2),
            "stages": {k: round(v["mIoU"], 2) for k, v in stages.items() if v.get("mIoU") is not None},
            "label_miou": {k: round(v["label_miou"], 2) for k, v in stages.items() if v.get("label_miou") is not None}}


def summarise(runs: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Per recipe: the final and stage-1 mIoU of every seed, their mean, spread and the mean wall
    time; with ``toy_full`` present, each mean over the full recipe's mean (``vs_full_x``)."""
    out: dict[str, dict] = {}
    for name, by_seed in runs.items():
        ok = {s: r for s, r in by_seed.items() if "mIoU" in r}
        if not ok:
            out[name] = {"error": {s: r.get("error") for s, r in by_seed.items()}}
            continue
        final = [r["mIoU"] for r in ok.values()]
        stage1 = [r["stages"].get("stage1", r["mIoU"]) for r in ok.values()]
        out[name] = {"seeds": sorted(ok), "mIoU": final, "mIoU_mean": round(statistics.fmean(final), 2),
                     "mIoU_sd": round(statistics.stdev(final), 2) if len(final) > 1 else 0.0,
                     "stage1_mean": round(statistics.fmean(stage1), 2),
                     "wall_s_mean": round(statistics.fmean(r["wall_s"] for r in ok.values()), 1)}
        if any(r.get("cached") for r in ok.values()):
            out[name]["wall_s_partial"] = True  # some runs reused earlier stages
        failed = sorted(set(by_seed) - set(ok))
        if failed:
            out[name]["failed_seeds"] = failed
    full = out.get("toy_full", {}).get("mIoU_mean")
    if full:
        s1 = out["toy_full"]["stage1_mean"]
        for r in out.values():
            if "mIoU_mean" in r:
                r["vs_full_x"] = round(r["mIoU_mean"] / full, 3)
                r["stage1_vs_full_stage1_x"] = round(r["stage1_mean"] / s1, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipes", nargs="+", default=RECIPES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="run.seed values (default: 0)")
    ap.add_argument("--out", default="runs/toy_bench", help="parent of the run folders")
    ap.add_argument("--resume", action="store_true",
                    help="keep runs that already finished with the same overrides instead of redoing them")
    ap.add_argument("--cached", action="store_true",
                    help="rerun in existing run folders: the pipeline redoes only the stages whose settings changed")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every recipe")
    # key=value tokens are overrides wherever they stand (after --seeds 0 1 too, which would take them)
    argv = sys.argv[1:]
    args = ap.parse_args([a for a in argv if a.startswith("-") or "=" not in a])
    if args.overrides:  # what is left for the positional has no "="
        ap.error(f"{' '.join(args.overrides)}: expected key=value overrides")
    args.overrides = [a for a in argv if not a.startswith("-") and "=" in a]
    bad = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+") in ("run.seed", "run.dir", "recipe")]
    if bad:
        ap.error(f"{' '.join(bad)}: set by the script (use --seeds / --out / --recipes)")
    out = Path(args.out)
    runs: dict[str, dict[int, dict]] = {}
    for name in args.recipes:
        for seed in args.seeds:
            r = run_one(name, seed, out / f"seed{seed}" / name, args.overrides, args.resume, args.cached)
            runs.setdefault(name, {})[seed] = r
            if "mIoU" in r:
                print(f"{name:<14} seed {seed}  {r['wall_s']:7.1f} s  mIoU {r['mIoU']:6.2f}  stages {r['stages']}  "
                      f"labels {r['label_miou']}{'  (resumed)' if r.get('resumed') else ''}"
                      f"{'  (stages reused: partial wall time)' if r.get('cached') else ''}", flush=True)
            else:
                print(f"{name:<14} seed {seed}  FAILED (exit {r['error']})", flush=True)
    summary = summarise(runs)
    print(f"\n{'recipe':<14} {'mean':>6} {'sd':>5} {'/ full':>6}  {'stage 1':>7}  {'wall s':>6}  per seed")
    for name, r in summary.items():
        if "mIoU_mean" in r:
            print(f"{name:<14} {r['mIoU_mean']:6.2f} {r['mIoU_sd']:5.2f} {r.get('vs_full_x', float('nan')):6.3f}  "
                  f"{r['stage1_mean']:7.2f}  {r['wall_s_mean']:6.1f}  {r['mIoU']}")
    print(json.dumps({"runs": {n: {str(s): r for s, r in v.items()} for n, v in runs.items()}, "summary": summary}))
    if any("error" in r for v in runs.values() for r in v.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
