"""Conversion speed on real VOC masks, side by side with its floors and baselines.

    python benchmarks/convert.py [--data PATH] [--repeats N] [--limit N] [--datum PATH]

Measured in one run, each figure the median of ``--repeats`` runs:

1. decode floor: ``np.array(Image.open(p))`` over the PNGs, masks/s on one core;
2. tags: ``synthesize_tags(Sample(...))`` on pre-decoded masks (Sample construction
   included: it is the input type), then decode + Sample + tags, then the plain
   baseline decode + ``np.unique``;
3. boxes: ``synthesize_boxes(Sample(...))`` on pre-decoded masks vs the baseline a
   user would write (``scipy.ndimage.label``, 8-connected, + ``find_objects`` per
   class present, on the whole image);
4. the whole ``weaklabels convert voc ... --to tags|boxes`` command at
   ``--num-proc 1`` and ``2``: wall time of the subprocess, interpreter start-up
   included;
5. Datumaro's ``datum convert -if voc_segmentation -f coco_instances`` on the same
   masks, when a ``datum`` executable is found (``--datum``, or on PATH);
6. points (``synthesize_points``, default protocol) and scribbles
   (``synthesize_scribbles``, default protocol) on pre-decoded masks, against the
   skeleton-based scribble generator weak-supervision papers use (WSL4MIS recipe:
   per class region, erode, ``skimage.morphology.skeletonize``, dilate to 3 px, keep
   inside the region), timed on the first ``--skeleton-limit`` masks (default 200: it
   runs at a few masks/s) and compared per mask.

Peak memory of a convert command is measured in a separate, untimed run (polling
costs CPU on a small machine), polling ``/proc`` every 20 ms over the process tree
(the command and its workers), in two ways: the largest single process (its
``VmHWM``, the kernel's own high-water mark of its RSS, so short peaks between
polls are not missed) and the largest sum of proportional set sizes (PSS, from
``/proc/PID/smaps_rollup``) over the tree. PSS splits pages shared after ``fork``
between the processes, so the tree sum does not count them twice. Not used:
``getrusage(RUSAGE_CHILDREN)`` / ``os.wait4`` ``ru_maxrss``: it counts the child's
RSS before ``exec``, i.e. this benchmark's own memory (the decoded masks), and it
is the largest single process only.

In-process measurements run round-robin (each repeat times every variant once) so
that drift on a shared machine hits them alike.

Ratios named ``*_vs_decode_floor_x`` are decode-floor time / measured time on the
same masks: 1.0 means as fast as decoding alone, 0.5 means twice as slow.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from weaklabels.synth.boxes import synthesize_boxes
from weaklabels.synth.points import synthesize_points
from weaklabels.synth.scribbles import synthesize_scribbles
from weaklabels.synth.tags import synthesize_tags
from weaklabels.types import Sample, SemanticMask, Vocabulary

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "voc-masks"
EIGHT = np.ones((3, 3), bool)

# Targets: (key, comparison, threshold, description)
TARGETS = [
    ("tags_vs_decode_floor_x", ">=", 1 / 1.5, "decode + tags within 1.5x of the decode floor"),
    ("boxes_vs_scipy_x", ">=", 1.5, "boxes synthesis >= 1.5x faster than the scipy baseline"),
    ("convert_tags_vs_decode_floor_x", ">=", 1 / 4, "convert --to tags (np 1) within 4x of the decode floor"),
    ("convert_np2_vs_np1_x", ">=", 1.7, "convert --to tags: --num-proc 2 >= 1.7x faster than 1"),
    ("peak_rss_mib", "<", 1024, "peak memory of any convert command < 1 GiB"),
    ("convert_vs_datumaro_x", ">=", 10, "convert --to tags (np 1) >= 10x faster than Datumaro"),
    ("scribbles_masks_per_s", ">=", 300, "scribbles synthesis >= 300 masks/s on one core"),
    ("scribbles_vs_skeleton_x", ">=", 20, "scribbles >= 20x faster than the skeletonize generator"),
    ("points_masks_per_s", ">=", 1000, "points synthesis >= 1,000 masks/s on one core"),
]


def skeleton_scribbles(a: np.ndarray, ignore: int = 255) -> np.ndarray:
    """The skeleton recipe of WSL4MIS-style generators, written plainly: per class region,
    erode, skeletonize, dilate to a 3 px stroke, keep inside the region."""
    from skimage.morphology import skeletonize

    out = np.full(a.shape, 254, np.uint8)
    for c in np.unique(a):
        if c == ignore:
            continue
        region = a == c
        core = ndimage.binary_erosion(region, iterations=2)
        if not core.any():
            core = region
        stroke = ndimage.binary_dilation(skeletonize(core), structure=EIGHT) & region
        out[stroke] = c
    return out


# --------------------------------------------------------------------------- data


def read_ids(data: Path, limit: int | None) -> list[str]:
    split = data / "ImageSets" / "sample.txt"
    masks = data / "SegmentationClassAug"
    if not split.is_file() or not masks.is_dir():
        sys.exit(f"error: {data} is not the shared VOC mask folder: expected {split} and {masks}/ "
                 f"(pass --data PATH)")
    ids = [ln.split()[0] for ln in split.read_text().splitlines() if ln.strip()]
    return ids[:limit] if limit else ids


def build_layouts(data: Path, ids: list[str], tmp: Path) -> tuple[Path, Path]:
    """Two roots of symlinks to the same PNGs: ours (the shared layout, ``sample`` split) and a
    devkit for Datumaro (``SegmentationClass`` + ``ImageSets/Segmentation/train.txt``)."""
    ours = tmp / "ours"
    (ours / "ImageSets").mkdir(parents=True)
    (ours / "SegmentationClassAug").symlink_to(data / "SegmentationClassAug")
    (ours / "ImageSets" / "sample.txt").write_text("\n".join(ids) + "\n")
    devkit = tmp / "devkit"
    (devkit / "ImageSets" / "Segmentation").mkdir(parents=True)
    (devkit / "SegmentationClass").symlink_to(data / "SegmentationClassAug")
    (devkit / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return ours, devkit


def decode(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


# --------------------------------------------------------------------------- timing


def make_sample(iid: str, a: np.ndarray, voc: Vocabulary) -> Sample:
    return Sample(iid, a.shape[0], a.shape[1], voc, semantic=SemanticMask(a, record=iid))


def scipy_boxes(a: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """The plain baseline: per class present, 8-connected components and their extents."""
    out = []
    for c in np.unique(a):
        if c == 0 or c == 255:
            continue
        lab, _n = ndimage.label(a == c, structure=EIGHT)
        out.extend((int(c), s) for s in ndimage.find_objects(lab))
    return out


def check_boxes_agree(ids, masks, voc, min_area: int = 10) -> int:
    """Untimed: our regular boxes equal the baseline's once the baseline drops components < min_area
    px (ours keep those, and void, as ignore boxes)."""
    bad = 0
    for iid, a in zip(ids, masks):
        ours = synthesize_boxes(make_sample(iid, a, voc))
        ref = []
        for c in np.unique(a):
            if c in (0, 255):
                continue
            lab, n = ndimage.label(a == c, structure=EIGHT)
            areas = np.bincount(lab.ravel(), minlength=n + 1)
            ref += [(s[1].start, s[0].start, s[1].stop, s[0].stop, int(c))
                    for k, s in enumerate(ndimage.find_objects(lab), 1) if areas[k] >= min_area]
        got = [(*map(int, b), int(c)) for b, c, ig in zip(ours.xyxy, ours.classes, ours.crowd) if not ig]
        bad += sorted(got) != sorted(ref)
    return bad


# --------------------------------------------------------------------------- subprocesses


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _proc_kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_cmd(cmd: list[str], *, poll_memory: bool = False) -> dict:
    """Run ``cmd``; wall seconds, exit code and, if polled, the largest VmHWM of any process in
    its tree and the largest PSS sum over the tree (MiB)."""
    hwm: dict[int, int] = {}
    peak_pss = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stop = threading.Event()

    def poll():
        while not stop.wait(0.02):
            tree = _tree(proc.pid)
            # The command's own pid holds this benchmark's memory until it execs: skip it until then.
            tree = [p for p in tree if _proc_kib(f"/proc/{p}/status", "VmHWM:") and not _is_self_image(p)]
            for p in tree:
                hwm[p] = max(hwm.get(p, 0), _proc_kib(f"/proc/{p}/status", "VmHWM:"))
            peak_pss[0] = max(peak_pss[0], sum(_proc_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in tree))

    poller = threading.Thread(target=poll, daemon=True) if poll_memory else None
    if poller:
        poller.start()
    output = proc.stdout.read().decode(errors="replace")  # drain first: a full pipe would block it
    proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    if poller:
        poller.join()
    mem = {"max_rss_mib": max(hwm.values(), default=0) / 1024, "tree_pss_mib": peak_pss[0] / 1024} \
        if poll_memory else {"max_rss_mib": None, "tree_pss_mib": None}
    return {"wall_s": wall, "rc": proc.returncode, "output": output, **mem}


_SELF_CMD = open(f"/proc/{os.getpid()}/cmdline", "rb").read()


def _is_self_image(pid: int) -> bool:
    """True while ``pid`` is still a fork of this benchmark, before its exec."""
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read() == _SELF_CMD
    except OSError:
        return False


def weaklabels_exe() -> list[str]:
    exe = shutil.which("weaklabels")
    return [exe] if exe else [sys.executable, "-m", "weaklabels.cli"]


def weaklabels_cmd(root: Path, kind: str, out: Path, num_proc: int) -> list[str]:
    return weaklabels_exe() + ["convert", "voc", "--root", str(root), "--split", "sample", "--to", kind,
                   "--out", str(out), "--quiet", "--overwrite", "--num-proc", str(num_proc)]


def bench_convert(root: Path, tmp: Path, n: int, repeats: int) -> dict:
    res = {}
    for kind in ("tags", "boxes"):
        for npr in (1, 2):
            out = tmp / f"out-{kind}-{npr}"
            cmd = weaklabels_cmd(root, kind, out, npr)
            walls = []
            for _ in range(repeats):
                r = run_cmd(cmd)
                if r["rc"] != 0:
                    sys.exit(f"error: {' '.join(cmd)} exited {r['rc']}:\n{r['output'][-2000:]}")
                walls.append(r["wall_s"])
            mem = run_cmd(cmd, poll_memory=True)
            res[(kind, npr)] = {"wall_s": statistics.median(walls), "masks_per_s": n / statistics.median(walls),
                                "max_rss_mib": mem["max_rss_mib"], "tree_pss_mib": mem["tree_pss_mib"]}
            shutil.rmtree(out, ignore_errors=True)
    return res


def find_datum(arg: str | None) -> tuple[str | None, str | None]:
    if arg:
        return (arg, None) if Path(arg).is_file() else (None, f"--datum {arg}: no such file")
    exe = shutil.which("datum")
    if exe:
        return exe, None
    return None, ("no 'datum' executable: install Datumaro (pip install 'datumaro[cli]'; it pins "
                  "pillow/pandas/pyarrow, so use a separate venv) and pass --datum PATH")


def bench_datumaro(datum: str | None, devkit: Path, tmp: Path, n: int, repeats: int) -> tuple[float | None, str | None]:
    if datum is None:
        return None, "not run"
    walls = []
    for k in range(repeats):
        out = tmp / f"datum-{k}"
        cmd = [datum, "convert", "-if", "voc_segmentation", "-i", str(devkit), "-f", "coco_instances", "-o", str(out)]
        try:
            r = run_cmd(cmd)
        except OSError as err:
            return None, f"{datum} could not run: {err}"
        if r["rc"] != 0:
            return None, f"datum convert exited {r['rc']}: {r['output'][-300:].strip()}"
        walls.append(r["wall_s"])
        shutil.rmtree(out, ignore_errors=True)
    return n / statistics.median(walls), None


# --------------------------------------------------------------------------- main


def _spin(_: int) -> float:
    t0 = time.perf_counter()
    s = 0
    for i in range(2_000_000):
        s += i
    return time.perf_counter() - t0


def parallel_capacity(repeats: int = 5) -> float:
    """Effective cores right now: time of one CPU-bound job / time of two jobs in two processes,
    times 2 (2.0 on two idle cores; a shared host often gives less)."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(2) as pool:
        ratios = []
        for _ in range(repeats):
            one = _spin(0)
            t0 = time.perf_counter()
            pool.map(_spin, [0, 1])
            ratios.append(2 * one / (time.perf_counter() - t0))
    return statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"VOC masks folder (default {DEFAULT_DATA})")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, help="first N ids of ImageSets/sample.txt only")
    ap.add_argument("--datum", help="Datumaro's 'datum' executable (default: on PATH)")
    ap.add_argument("--skeleton-limit", type=int, default=200, help="masks for the slow skeleton baseline")
    args = ap.parse_args()
    data = args.data.resolve()
    if not data.is_dir():
        sys.exit(f"error: data folder {data} does not exist (pass --data PATH to the shared voc-masks folder)")
    ids = read_ids(data, args.limit)
    n, R = len(ids), args.repeats
    paths = [data / "SegmentationClassAug" / f"{i}.png" for i in ids]
    voc = Vocabulary.voc()

    masks = [decode(p) for p in paths]  # warm the page cache; the pre-decoded inputs of 2-4
    variants = {
        "decode": lambda: [decode(p) for p in paths],
        "tags": lambda: [synthesize_tags(make_sample(i, a, voc)) for i, a in zip(ids, masks)],
        "dec_tags": lambda: [synthesize_tags(make_sample(i, decode(p), voc)) for i, p in zip(ids, paths)],
        "unique": lambda: [np.unique(decode(p)) for p in paths],
        "boxes": lambda: [synthesize_boxes(make_sample(i, a, voc)) for i, a in zip(ids, masks)],
        "scipy": lambda: [scipy_boxes(a) for a in masks],
        "points": lambda: [synthesize_points(make_sample(i, a, voc)) for i, a in zip(ids, masks)],
        "scribbles": lambda: [synthesize_scribbles(make_sample(i, a, voc)) for i, a in zip(ids, masks)],
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(R):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_skel = min(n, args.skeleton_limit)
    skel_times = []
    for _ in range(R):
        t0 = time.perf_counter()
        for a in masks[:n_skel]:
            skeleton_scribbles(a)
        skel_times.append(time.perf_counter() - t0)
    skel_rate = n_skel / statistics.median(skel_times)
    t_decode, t_tags, t_dec_tags = med["decode"], med["tags"], med["dec_tags"]
    t_unique, t_boxes, t_scipy = med["unique"], med["boxes"], med["scipy"]
    boxes_disagree = check_boxes_agree(ids, masks, voc)
    del masks  # keep this process small while the commands run

    capacity_before = parallel_capacity()
    t0 = time.perf_counter()
    startup = statistics.median(run_cmd([*weaklabels_exe(), "--help"])["wall_s"]
                                for _ in range(R))
    with tempfile.TemporaryDirectory(prefix="wl-bench-") as td:
        tmp = Path(td)
        ours, devkit = build_layouts(data, ids, tmp)
        conv = bench_convert(ours, tmp, n, R)
        datum, why = find_datum(args.datum)
        datum_rate, err = bench_datumaro(datum, devkit, tmp, n, R)
        why = why or err
    t_sub = time.perf_counter() - t0
    capacity_after = parallel_capacity()

    decode_rate = n / t_decode
    ct1 = conv[("tags", 1)]
    r = {
        "num_masks": n, "repeats": R,
        "decode_masks_per_s": decode_rate,
        "tags_synth_masks_per_s": n / t_tags,
        "tags_decode_synth_masks_per_s": n / t_dec_tags,
        "tags_vs_decode_floor_x": t_decode / t_dec_tags,
        "tags_baseline_unique_masks_per_s": n / t_unique,
        "tags_vs_unique_baseline_x": t_unique / t_dec_tags,
        "boxes_synth_masks_per_s": n / t_boxes,
        "boxes_scipy_baseline_masks_per_s": n / t_scipy,
        "boxes_vs_scipy_x": t_scipy / t_boxes,
        "boxes_disagreeing_masks": boxes_disagree,
        "points_masks_per_s": n / med["points"],
        "scribbles_masks_per_s": n / med["scribbles"],
        "skeleton_masks_per_s": skel_rate,
        "skeleton_num_masks": n_skel,
        "scribbles_vs_skeleton_x": (n / med["scribbles"]) / skel_rate,
        "cli_startup_s": startup,
        "convert_tags_np1_s": ct1["wall_s"],
        "convert_tags_np1_masks_per_s": ct1["masks_per_s"],
        "convert_tags_np2_masks_per_s": conv[("tags", 2)]["masks_per_s"],
        "convert_boxes_np1_masks_per_s": conv[("boxes", 1)]["masks_per_s"],
        "convert_boxes_np2_masks_per_s": conv[("boxes", 2)]["masks_per_s"],
        "convert_np2_vs_np1_x": ct1["wall_s"] / conv[("tags", 2)]["wall_s"],
        "convert_boxes_np2_vs_np1_x": conv[("boxes", 1)]["wall_s"] / conv[("boxes", 2)]["wall_s"],
        "convert_tags_vs_decode_floor_x": t_decode / ct1["wall_s"],
        "peak_rss_mib": max(c["max_rss_mib"] for c in conv.values()),
        "peak_tree_pss_mib": max(c["tree_pss_mib"] for c in conv.values()),
        "datumaro_masks_per_s": datum_rate,
        "convert_vs_datumaro_x": None if datum_rate is None else ct1["masks_per_s"] / datum_rate,
        "datumaro_error": why,
        "subprocess_section_s": t_sub,
        "parallel_capacity_cores_before": capacity_before,
        "parallel_capacity_cores_after": capacity_after,
    }

    rows = [
        ("decode floor: np.array(Image.open(p))", f"{decode_rate:,.0f} masks/s", "1 core"),
        ("tags: synthesize_tags(Sample) only", f"{r['tags_synth_masks_per_s']:,.0f} masks/s", "pre-decoded"),
        ("tags: decode + Sample + synthesize_tags", f"{r['tags_decode_synth_masks_per_s']:,.0f} masks/s",
         f"{r['tags_vs_decode_floor_x']:.2f} of floor speed"),
        ("tags baseline: decode + np.unique", f"{r['tags_baseline_unique_masks_per_s']:,.0f} masks/s",
         f"ours {r['tags_vs_unique_baseline_x']:.2f}x its speed"),
        ("boxes: synthesize_boxes(Sample) only", f"{r['boxes_synth_masks_per_s']:,.0f} masks/s", "pre-decoded"),
        ("boxes baseline: ndimage.label+find_objects", f"{r['boxes_scipy_baseline_masks_per_s']:,.0f} masks/s",
         f"ours {r['boxes_vs_scipy_x']:.2f}x faster; {boxes_disagree} masks disagree"),
        ("points: synthesize_points(Sample) only", f"{r['points_masks_per_s']:,.0f} masks/s", "pre-decoded"),
        ("scribbles: synthesize_scribbles(Sample) only", f"{r['scribbles_masks_per_s']:,.0f} masks/s",
         "pre-decoded"),
        ("scribbles baseline: skeletonize per class", f"{skel_rate:,.1f} masks/s",
         f"first {n_skel} masks; ours {r['scribbles_vs_skeleton_x']:.1f}x faster"),
        ("CLI start-up: weaklabels --help", f"{startup:.2f} s", "per command"),
    ]
    for (kind, npr), c in conv.items():
        rows.append((f"weaklabels convert --to {kind} --num-proc {npr}", f"{c['masks_per_s']:,.0f} masks/s",
                     f"{c['wall_s']:.2f} s wall; max RSS {c['max_rss_mib']:.0f} MiB, tree PSS {c['tree_pss_mib']:.0f} MiB"))
    rows.append(("datum convert -f coco_instances",
                 "n/a" if datum_rate is None else f"{datum_rate:,.1f} masks/s",
                 why or f"ours (tags, np 1) {r['convert_vs_datumaro_x']:.1f}x faster"))
    print(f"{n:,} masks from {data}; median of {R} repeats; effective cores (2 = both idle): "
          f"{capacity_before:.2f} before the commands, {capacity_after:.2f} after")
    w = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>16}  {c}")
    print("targets:")
    for key, op, thr, desc in TARGETS:
        v = r[key]
        ok = None if v is None else (v >= thr if op == ">=" else v < thr)
        print(f"  [{'n/a' if ok is None else 'met' if ok else 'MISSED'}] {desc}: {key} = "
              f"{'null' if v is None else f'{v:.3g}'} (target {op} {thr:.3g})")
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
