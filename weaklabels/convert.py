"""The conversion pipeline: source -> Sample -> synthesis -> raster -> writer.

Work is cut into shards of consecutive items; each shard is converted and
written by one process, so ``num_proc`` workers write in parallel and the
output does not depend on ``num_proc`` (randomness is keyed by image id).

Output folder life cycle:

1. ``.weaklabels.json`` is written first with ``"status": "running"`` and the
   run's fingerprint (source, kind, options).
2. Shards go to ``.partial/`` under temporary names, renamed when complete,
   each with a ``.json`` of its statistics and skipped items.
3. When every shard is done, shards move into place and ``vocabulary.json``,
   ``stats.csv``, ``errors.json`` and the dataset card ``README.md`` are
   written; the marker then says ``"complete"``.

A run that stops early leaves only ``.partial/`` and the marker: nothing that
looks like a finished dataset. Running the same command again resumes it. An
interrupted run stays ``"running"``: other settings are refused without
``--overwrite``, as they would discard it. A run stopped by an error is marked
``"failed"`` (with the error): the same settings resume it once the input is
fixed, other settings replace it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from weaklabels.errors import OutputExistsError, SchemaError, WeaklabelsError
from weaklabels.raster import rasterize
from weaklabels.sources.base import Source
from weaklabels.stats import Summary
from weaklabels.synth import synthesize
from weaklabels.types import SCHEMA_VERSION, WEAK_KINDS, Sample, Vocabulary
from weaklabels.writers import WRITERS, Converted
from weaklabels.writers.card import render_card

log = logging.getLogger(__name__)

MARKER = ".weaklabels.json"
LOCK = ".weaklabels.lock"  # held while a conversion writes the folder
PARTIAL = ".partial"
EVAL_SPLITS = ("val", "valid", "validation", "test", "minival", "eval")


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides what a conversion writes.

    ``gt``: ``auto`` stores the full mask for evaluation splits only (split
    names starting with one of ``EVAL_SPLITS``), ``always`` / ``never`` force it.
    """

    kind: str
    seed: int = 0
    format: str = "hf"
    gt: str = "auto"
    shard_size: int = 256
    min_pixels: int = 1          # tags: pixels a class needs to count as present
    min_area: int = 10           # boxes from components: smallest kept component, pixels
    connectivity: int = 8        # boxes from components: 4 or 8
    point_radius: float = 0.0    # points: disc radius in the weak label map
    points_per: str = "class"    # points: "class" or "instance"
    points_k: int = 1            # points per object
    placement: str = "center"    # points: center, random or human
    background: bool | None = None  # points / scribbles: annotate background too (None: scribbles only)
    width: float = 3.0           # scribbles: stroke width, pixels
    length_ratio: float = 1.0    # scribbles: kept fraction of the medial path (0: a single point)
    given: bool = False          # use the samples' own (human) annotations instead of synthesis
    regions: str = "none"        # none, felzenszwalb, slic, or a folder of region PNGs

    def __post_init__(self) -> None:
        if self.kind not in WEAK_KINDS:
            raise SchemaError(f"kind={self.kind!r}; expected one of {', '.join(WEAK_KINDS)}")
        if self.format not in WRITERS:
            raise SchemaError(f"format={self.format!r}; expected one of {', '.join(WRITERS)}")
        if self.gt not in ("auto", "always", "never"):
            raise SchemaError(f"gt={self.gt!r}; expected auto, always or never")
        if self.shard_size < 1:
            raise SchemaError(f"shard_size={self.shard_size}; expected >= 1")
        if self.regions not in ("none", "felzenszwalb", "slic") and not Path(self.regions).is_dir():
            raise SchemaError(f"regions={self.regions!r}; expected none, felzenszwalb, slic or a folder of "
                              f"region PNGs")

    def with_gt(self, split: str) -> bool:
        if self.gt != "auto":
            return self.gt == "always"
        return split.lower().startswith(EVAL_SPLITS)

    def synth_options(self) -> dict:
        if self.kind == "tags":
            return {"min_pixels": self.min_pixels}
        if self.kind == "boxes":
            return {"min_area": self.min_area, "connectivity": self.connectivity}
        if self.kind == "points":
            return {"k": self.points_k, "per": self.points_per, "placement": self.placement,
                    "background": bool(self.background), "min_area": self.min_area}
        return {"width": self.width, "length_ratio": self.length_ratio,
                "background": True if self.background is None else self.background, "min_area": self.min_area}


@dataclass
class ConvertResult:
    out: Path
    summary: Summary
    vocabulary: Vocabulary
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_shards: int = 0
    warnings: list[dict] = field(default_factory=list)


def convert_sample(sample: Sample, options: ConvertOptions, with_gt: bool) -> Converted:
    """One item through synthesis and rasterisation (pure; no files)."""
    opts = {} if options.given else options.synth_options()
    weak = synthesize(sample, options.kind, seed=options.seed, given=options.given, **opts)
    label = weak_label(sample, weak, options)
    gt = sample.semantic.array if (with_gt and sample.semantic is not None) else None
    return Converted(weak.replace(semantic=None, instances=None), options.kind, label, gt=gt,
                     regions=regions_of(sample, options.regions))


def weak_label(full: Sample, weak: Sample, options: ConvertOptions):
    """The rasterised weak label of ``weak``. A synthesized point's disc (``point_radius``) is kept
    inside its own class of ``full``'s mask, so synthesis never labels a pixel of another class;
    human clicks are drawn as given."""
    label = rasterize(weak, options.kind, point_radius=options.point_radius)
    if options.kind == "points" and options.point_radius > 0 and not options.given and full.semantic is not None:
        wrong = (label < len(full.vocabulary)) & (label != full.semantic.array)
        label[wrong] = full.vocabulary.unlabelled
    return label


def regions_of(sample: Sample, how: str):
    """The region map of ``sample`` by ``how`` (a method of ``regions.METHODS`` or a folder)."""
    if how == "none":
        return None
    from weaklabels import regions

    if how in regions.METHODS:
        if sample.image is None:
            raise SchemaError(f"image {sample.image_id!r}: --regions {how} needs images; this dataset "
                              f"has masks only")
        from weaklabels.sources.files import read_rgb

        rgb = read_rgb(sample.image.read_bytes(), f"image {sample.image_id!r}")
        return regions.compute_regions(rgb, how)
    return regions.read_regions(how, sample.image_id, sample.size)


# --------------------------------------------------------------------------- workers

_STATE: dict = {}


def _init_worker(sources: dict[str, Source], options: ConvertOptions, partial: Path, on_error: str) -> None:
    _STATE.update(sources=sources, options=options, partial=partial, on_error=on_error)


def _pool_worker(*args) -> None:
    # Ctrl-C reaches every process of the group: the parent alone handles it (it terminates the
    # pool), so workers do not print their own KeyboardInterrupt tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(*args)


def _shard_stats_path(partial: Path, split: str, shard: int) -> Path:
    return partial / "shards" / f"{split}-{shard:05d}.json"


def _run_shard(task: tuple[str, int, int, int, int]) -> tuple[str, int, int]:
    """Convert and write items ``[start, stop)`` of ``split``; returns (split, shard, n items)."""
    split, shard, num_shards, start, stop = task
    source: Source = _STATE["sources"][split]
    options: ConvertOptions = _STATE["options"]
    partial: Path = _STATE["partial"]
    on_error: str = _STATE["on_error"]
    with_gt = options.with_gt(split)
    writer = WRITERS[options.format](source.vocabulary, options.kind)
    summary = Summary(len(source.vocabulary))
    items: list[Converted] = []
    errors: list[dict] = []
    warnings: list[dict] = []
    for i in range(start, stop):
        try:
            item = convert_sample(source[i], options, with_gt)
            writer.check(item)
        except Exception as err:  # noqa: BLE001 - every failure is reported with its item
            iid = _safe_id(source, i)
            if on_error == "fail":
                if isinstance(err, WeaklabelsError):
                    raise
                raise WeaklabelsError(f"{split} item {i} ({iid}): {type(err).__name__}: {err}") from err
            errors.append({"split": split, "index": i, "image_id": iid,
                           "error": type(err).__name__, "message": str(err)})
            summary.skipped += 1
            continue
        summary.add(item.sample, options.kind, item.weak_label)
        warnings.extend({"split": split, "index": i, "image_id": item.sample.image_id, "message": n}
                        for n in item.sample.notes)
        items.append(item)
    writer.write_shard(partial, split, shard, num_shards, items)
    stats = _shard_stats_path(partial, split, shard)
    stats.parent.mkdir(parents=True, exist_ok=True)
    tmp = stats.with_suffix(".tmp")
    tmp.write_text(json.dumps({"summary": summary.to_dict(), "errors": errors, "warnings": warnings}))
    os.replace(tmp, stats)
    return split, shard, stop - start


def _safe_id(source: Source, i: int) -> str:
    try:
        return source.image_id(i)
    except Exception:  # noqa: BLE001 - the id itself may be the broken part
        return f"#{i}"


# --------------------------------------------------------------------------- driver


def fingerprint(sources: dict[str, Source], options: ConvertOptions) -> str:
    d = {"schema_version": SCHEMA_VERSION, "options": asdict(options),
         "sources": {k: s.describe() for k, s in sources.items()},
         "sizes": {k: len(s) for k, s in sources.items()}}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_out(out: Path, fp: str, overwrite: bool) -> bool:
    """Make ``out`` ready; return True when resuming an interrupted or failed run of the same fingerprint."""
    marker = out / MARKER
    if any(f.name != LOCK for f in out.iterdir()):  # convert() made the folder and holds its lock
        state = None
        if marker.is_file():
            try:
                state = json.loads(marker.read_text())
            except json.JSONDecodeError:
                state = None
        status = state.get("status") if state else None
        if overwrite or (status == "failed" and state.get("fingerprint") != fp):
            # a failed run's folder holds no dataset, only its partial shards: other settings replace it
            if state is None:
                raise OutputExistsError(
                    f"output folder {out} is not empty and was not written by weaklabels (no {MARKER}); "
                    f"refusing to delete it even with overwrite=True / --overwrite: remove it yourself")
            for f in out.iterdir():  # everything but the lock this run holds
                if f.name != LOCK:
                    shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
        elif status in ("running", "failed") and state.get("fingerprint") == fp:
            return True  # its finished shards are valid: the same settings resume after them
        elif status == "running":
            raise OutputExistsError(
                f"output folder {out} holds an interrupted conversion with other settings "
                f"(fingerprint {state.get('fingerprint')} != {fp}); pass overwrite=True / --overwrite to "
                f"start again")
        else:
            raise OutputExistsError(f"output folder {out} is not empty; pass overwrite=True / --overwrite to "
                                    f"replace it")
    return False


def _write_marker(out: Path, status: str, fp: str, extra: dict) -> None:
    tmp = out / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"status": status, "fingerprint": fp, **extra}, indent=2) + "\n")
    os.replace(tmp, out / MARKER)


def plan_shards(sources: dict[str, Source], shard_size: int) -> list[tuple[str, int, int, int, int]]:
    tasks = []
    for split, src in sources.items():
        n = len(src)
        num = max(1, -(-n // shard_size))
        for k in range(num):
            tasks.append((split, k, num, k * shard_size, min(n, (k + 1) * shard_size)))
    return tasks


def convert(sources: dict[str, Source], out: str | Path, options: ConvertOptions, *,
            num_proc: int = 1, on_error: str = "fail", overwrite: bool = False,
            progress: Callable[[int], None] | None = None, command: str | None = None) -> ConvertResult:
    """Convert every split of ``sources`` into ``out``.

    ``progress(n)`` is called with the number of items finished after each shard.
    Raises the first item's error under ``on_error="fail"``; under ``"skip"``
    failed items are listed in ``errors.json`` and the summary.
    """
    if on_error not in ("fail", "skip"):
        raise SchemaError(f"on_error={on_error!r}; expected fail or skip")
    if not sources:
        raise SchemaError("no split to convert")
    vocabs = {s: src.vocabulary for s, src in sources.items()}
    vocabulary = next(iter(vocabs.values()))
    if any(v != vocabulary for v in vocabs.values()):
        raise SchemaError(f"splits disagree on the vocabulary: {sorted(vocabs)}")
    for split, src in sources.items():
        if len(src) == 0:  # an empty split would give a dataset no reader can load
            where = ", ".join(f"{k}={v}" for k, v in src.describe().items())
            raise SchemaError(f"split {split!r} has no images ({where}); expected at least one")
    out = Path(out)
    _check_apart(out, sources, options)
    t0 = time.perf_counter()
    fp = fingerprint(sources, options)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        return _convert_locked(sources, out, options, fp, t0, num_proc=num_proc, on_error=on_error,
                               overwrite=overwrite, progress=progress, command=command)
    finally:
        _unlock(out, lock)


def input_paths(sources: dict[str, Source], options: ConvertOptions) -> list[tuple[str, Path]]:
    """``(what, path)`` for every local file or folder the conversion reads."""
    found = []
    for split, src in sources.items():
        # a Source written before inputs() existed cannot be checked; it still converts
        inputs = getattr(src, "inputs", None)
        found.extend((f"input of split {split!r}", Path(p)) for p in (inputs() if inputs else []))
    if options.regions not in ("none", "felzenszwalb", "slic"):
        found.append(("regions folder", Path(options.regions)))
    return found


def _check_apart(out: Path, sources: dict[str, Source], options: ConvertOptions) -> None:
    """Refuse an ``out`` that is or holds an input, before anything is locked or deleted:
    ``--overwrite`` would delete the input (and the writer mix with it). A folder inside an input
    folder is fine (say ``VOCdevkit/weak-boxes``): nothing of the input is touched."""
    o = out.resolve()
    for what, p in input_paths(sources, options):
        q = p.resolve()
        how = "is" if o == q else "holds" if o in q.parents else None
        if how is not None:
            raise OutputExistsError(f"output folder {out} {how} the {what} ({p}); writing there would delete "
                                    f"or mix with the input: choose an output folder apart from it")


def _lock(out: Path):
    """An exclusive lock on ``out`` (POSIX ``flock``): two conversions into one folder would each take
    the other's shards for their own and corrupt the result. ``None`` (no lock, a warning) where the
    platform or filesystem cannot lock (Windows, Lustre without flock, a read-only folder)."""
    try:
        import fcntl
    except ImportError:
        return None
    path = out / LOCK
    try:
        f = open(path, "a")
    except OSError as err:  # e.g. a read-only folder: _prepare_out then refuses it with its own message
        log.warning("cannot create %s (%s): converting without a lock", path, err)
        return None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        f.close()
        if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise _busy(out) from None
        log.warning("cannot lock %s (%s): converting without a lock", path, err)
        return None
    # The holder before us deletes the file when it finishes: if we locked that deleted file, the
    # folder may already be another run's (it created and locked a new file)
    try:
        same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        f.close()
        raise _busy(out)
    return f


def _busy(out: Path) -> OutputExistsError:
    return OutputExistsError(f"output folder {out}: another weaklabels convert is writing to this folder "
                             f"(it holds {out / LOCK}); wait for it or choose another output folder")


def _unlock(out: Path, f) -> None:
    if f is not None:
        (out / LOCK).unlink(missing_ok=True)  # while still holding it (see _lock)
        f.close()


def _convert_locked(sources, out: Path, options: ConvertOptions, fp: str, t0: float, *, num_proc: int,
                    on_error: str, overwrite: bool, progress, command) -> ConvertResult:
    resumed = _prepare_out(out, fp, overwrite)
    partial = out / PARTIAL
    partial.mkdir(exist_ok=True)
    about = {"options": asdict(options), "sources": {k: s.describe() for k, s in sources.items()}}
    _write_marker(out, "running", fp, about)
    try:
        return _convert_marked(sources, out, options, fp, t0, partial, resumed, about, num_proc=num_proc,
                               on_error=on_error, progress=progress, command=command)
    except Exception as err:
        # "running" stays for an interruption (rerun to resume); a run that stopped on an error is
        # "failed", so a rerun with other settings (the usual fix) may replace it
        with contextlib.suppress(OSError):  # e.g. a full disk: the original error is the one to report
            _write_marker(out, "failed", fp, {**about, "error": f"{type(err).__name__}: {err}"})
        raise


def _convert_marked(sources, out: Path, options: ConvertOptions, fp: str, t0: float, partial: Path,
                    resumed: bool, about: dict, *, num_proc: int, on_error: str, progress,
                    command) -> ConvertResult:
    vocabulary = next(iter(sources.values())).vocabulary
    load_errors = []
    for split, src in sources.items():
        for record, message in src.load_errors():
            if on_error == "fail":
                raise SchemaError(message)
            load_errors.append({"split": split, "index": None, "image_id": record,
                                "error": "SourceError", "message": message})

    writer = WRITERS[options.format](vocabulary, options.kind)
    tasks = plan_shards(sources, options.shard_size)
    todo = []
    done_before = 0
    for t in tasks:
        if writer.shard_done(partial, t[0], t[1], t[2]) and _shard_stats_path(partial, t[0], t[1]).is_file():
            done_before += 1
            if progress:
                progress(t[4] - t[3])
        else:
            todo.append(t)
    if resumed:
        log.info("resuming %s: %d of %d shards already written", out, done_before, len(tasks))

    if num_proc <= 1 or len(todo) <= 1:
        _init_worker(sources, options, partial, on_error)
        for t in todo:
            _run_shard(t)
            if progress:
                progress(t[4] - t[3])
    else:
        # pyarrow imports pandas lazily on first table build (0.25 s): do it once here so forked
        # workers inherit it instead of each paying for it.
        import pyarrow as pa

        pa.Table.from_pylist([{"x": 0}])
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(min(num_proc, len(todo)), initializer=_pool_worker,
                      initargs=(sources, options, partial, on_error)) as pool:
            for _split, _shard, n in pool.imap_unordered(_run_shard, todo):
                if progress:
                    progress(n)

    # Every shard is on disk: gather statistics, then move the data into place.
    summary = Summary(len(vocabulary))
    errors = list(load_errors)
    warnings: list[dict] = []
    for split, shard, *_ in tasks:
        d = json.loads(_shard_stats_path(partial, split, shard).read_text())
        summary = summary.merge(Summary.from_dict(d["summary"]))
        errors.extend(d["errors"])
        warnings.extend(d.get("warnings", []))
    summary.skipped = sum(1 for e in errors if e["index"] is not None)
    written = {s: len(src) - sum(1 for e in errors if e["split"] == s and e["index"] is not None)
               for s, src in sources.items()}
    for split, n in written.items():
        if n == 0:  # every item failed (under --on-error skip): no data files for this split
            log.warning("split %r: every item failed; it has no data files (see errors.json)", split)
    data_files = writer.finalize(partial, out, written)
    vocabulary.save(out / "vocabulary.json")
    summary.write_csv(out / "stats.csv", vocabulary)
    (out / "errors.json").write_text(json.dumps(errors, indent=2) + "\n")
    (out / "warnings.json").write_text(json.dumps(warnings, indent=2) + "\n")
    (out / "summary.json").write_text(json.dumps(summary.to_dict()) + "\n")
    if options.format == "hf":
        card = render_card(vocabulary=vocabulary, options=options, summary=summary, data_files=data_files,
                           sources={k: s.describe() for k, s in sources.items()},
                           num_errors=len(errors), command=command, num_warnings=len(warnings))
        (out / "README.md").write_text(card)
    shutil.rmtree(partial, ignore_errors=True)
    _write_marker(out, "complete", fp, {**about, "data_files": data_files})
    return ConvertResult(out, summary, vocabulary, errors, time.perf_counter() - t0, done_before, warnings)
