"""One recipe, all its stages, in order, each cached under the run directory.

Stages (``SPML.md`` section 6):

=========  ===========================================================  ==================
stage      does                                                         recipes
=========  ===========================================================  ==================
cam        tag classifier, CAM labels for relation C (``pseudo/cam.py``)  tags, boxes
stage1     SPML training of the embedding and joint head (``engine.py``)  all
pseudo1    dense pseudo labels: scores, random walk, CRF (``pseudo/``)    weak (full: gt)
stage2     fresh head on the frozen embedding (``pseudo/stage2.py``)      all (full: on gt)
pseudo2    pseudo labels from the first stage-2 classifier                tags (2 rounds)
stage2b    the second stage-2 classifier                                  tags (2 rounds)
=========  ===========================================================  ==================

A stage's folder is ``run_dir/stages/NAME-KEY``, where KEY hashes the
configuration the stage reads and the keys of the stages it reads from; it is
complete when its ``done.json`` exists. A rerun recomputes the keys and skips
every complete stage, so it resumes at the first stage not done (stage 1 also
resumes from its last checkpoint), and changing, say, ``pseudo.crf`` reruns
only the pseudo labels and what follows. Each stage is evaluated on the
validation split (``metrics.json`` in its folder); ``run_dir/metrics.json`` is
the last stage's evaluation plus ``stages``: every stage's summary (mIoU, and
for pseudo labels their mIoU against the training ground truth when present).
``run_dir/stages.json`` lists the stages with their folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from spml_train import data as data_mod
from spml_train import distributed
from spml_train.config import ConfigError
from spml_train.engine import batches, load_trained, resolve_device, seed_stage, train_spml
from spml_train.evaluate import evaluate, iou_table

log = logging.getLogger(__name__)

KEY_VERSION = 4  # bump when a stage's output changes for the same configuration


@dataclass(frozen=True)
class Stage:
    name: str
    key: str
    dir: Path

    @property
    def done(self) -> bool:
        return (self.dir / "done.json").is_file()

    def summary(self) -> dict:
        return json.loads((self.dir / "done.json").read_text())


def stage_key(name: str, config: dict, inputs: list[str]) -> str:
    """A short hash of what a stage reads: its configuration and its input stages' keys."""
    blob = json.dumps({"stage": name, "version": KEY_VERSION, "config": config, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Stages:
    """The stage folders of one run directory and the ``stages.json`` index."""

    def __init__(self, run_dir: Path, write: bool = True):
        self.run_dir, self.write = run_dir, write
        self.index: dict[str, dict] = {}

    def open(self, name: str, config: dict, inputs: list[Stage]) -> Stage:
        key = stage_key(name, config, [s.key for s in inputs])
        st = Stage(name, key, self.run_dir / "stages" / f"{name}-{key}")
        if self.write:
            st.dir.mkdir(parents=True, exist_ok=True)
            (st.dir / "stage.json").write_text(json.dumps(
                {"stage": name, "key": key, "config": config, "inputs": [s.dir.name for s in inputs]}, indent=2) + "\n")
            self.index[name] = {"dir": str(st.dir.relative_to(self.run_dir)), "key": key, "done": st.done}
            self._save()
        return st

    def finish(self, st: Stage, summary: dict) -> None:
        if self.write:
            (st.dir / "done.json").write_text(json.dumps(summary, indent=2) + "\n")
            self.index[st.name].update(done=True)
            self._save()

    def _save(self) -> None:
        (self.run_dir / "stages.json").write_text(json.dumps(self.index, indent=2) + "\n")


def stage_dirs(run_dir: Path) -> dict[str, Path]:
    """The stage folders of a run, by stage name, from ``run_dir/stages.json``."""
    index = json.loads((Path(run_dir) / "stages.json").read_text())
    return {name: Path(run_dir) / rec["dir"] for name, rec in index.items()}


def _section(cfg, *paths: str) -> dict:
    out = {}
    for p in paths:
        node = OmegaConf.select(cfg, p)
        out[p] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return out


# settings that never change what a stage computes: left out of its key, so that changing them
# (more loader workers, another evaluation split, another chunk size) retrains nothing
_NOT_IN_KEY = ("data.workers", "data.val", "data.val_split", "loss.chunk")


def _key_section(cfg, *paths: str, drop: tuple[str, ...] = ()) -> dict:
    """``_section`` without ``_NOT_IN_KEY`` and ``drop`` (dotted paths below the given ones)."""
    out = _section(cfg, *paths)
    for full in _NOT_IN_KEY + drop:
        head, _, leaf = full.rpartition(".")
        node = out.get(head)
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def plan(cfg) -> list[str]:
    """The stages a configuration runs, in order."""
    d = cfg.data
    weak = not d.full_supervision
    stages = ["cam"] if weak and d.cam.enabled and d.kind in ("tags", "boxes") else []
    stages.append("stage1")
    if cfg.stage2.enabled:
        # full supervision too: its stage-2 head trains on the ground truth (pseudo1 copies it), so
        # the fully supervised bound gets the same extra classifier as the weak recipes
        for r in range(cfg.stage2.rounds if weak else 1):
            stages += [f"pseudo{r + 1}", "stage2" + ("" if r == 0 else chr(ord("a") + r))]
    return stages


def _setup(cfg, run_dir: Path):
    device = resolve_device(cfg.run.device)
    dist_on = distributed.init(device.type)
    rank, _, local_rank = distributed.world()
    if dist_on and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    return device, dist_on, rank == 0


def _dataset(cfg, folder: Path, *, kind: str | None = None, dense: bool = False):
    d = cfg.data
    return data_mod.ConvertedDataset(folder, d.train_split, kind=kind or d.kind, train=True, crop=d.crop,
                                     scale=(d.scale_min, d.scale_max), flip=d.flip,
                                     flip_pairs=[list(p) for p in d.flip_pairs], dilate=0.0 if dense else d.dilate,
                                     full_supervision=d.full_supervision and not dense, seed=cfg.run.seed)


@dataclass
class _Run:
    """What every stage of one run reads."""

    cfg: object
    run_dir: Path
    device: torch.device
    dist_on: bool
    main: bool
    stages: Stages
    train_dir: Path
    weak_ds: object
    val_ds: object
    report: dict


def run(cfg, run_dir: Path) -> dict | None:
    """Run every stage of ``cfg`` not done yet; returns the final metrics (``None`` on data-parallel
    ranks but 0, which stop after stage 1)."""
    device, dist_on, main = _setup(cfg, run_dir)
    d = cfg.data
    train_dir, val_dir = Path(d.train), Path(d.val)
    if d.shapes.num_train:
        if main:
            data_mod.prepare_toy(cfg, run_dir / "data")
        if dist_on:
            torch.distributed.barrier()
        train_dir, val_dir = data_mod.prepare_toy(cfg, run_dir / "data")  # ready: returns the paths
    r = _Run(cfg, run_dir, device, dist_on, main, Stages(run_dir, write=main), train_dir, _dataset(cfg, train_dir),
             data_mod.ConvertedDataset(val_dir, d.val_split, kind=d.kind, train=False), {})
    _check_data(cfg, r.weak_ds, r.val_ds)
    todo = plan(cfg)
    log.info("stages: %s", " -> ".join(todo))
    cam = _run_cam(r) if "cam" in todo else None
    done = _run_stage1(r, cam, final=todo[-1] == "stage1")
    if done is None:
        return None
    s1, model, metrics1, skipped = done
    metrics = _run_stage2(r, s1, cam, model, sum(s.startswith("pseudo") for s in todo)) or metrics1
    metrics = {**metrics, "stage": todo[-1], "stages": r.report, "iterations": cfg.optim.iterations,
               "skipped_steps": skipped}
    if "retrieval" in metrics1:
        metrics["retrieval"] = metrics1["retrieval"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("\n%s", iou_table(metrics))
    log.info("stages: %s", ", ".join(f"{k} {v['mIoU']:.2f}" for k, v in r.report.items() if v.get("mIoU") is not None))
    return metrics


def _check_data(cfg, train_ds, val_ds) -> None:
    """What would otherwise fail after hours of training (evaluation, pseudo labels) or give a
    meaningless mIoU is checked before any work; each raises ``SchemaError`` (exit 4)."""
    from weaklabels.errors import SchemaError

    tv, vv = train_ds.vocabulary, val_ds.vocabulary
    # what scoring depends on; source ids (COCO's category ids, or none from an HF copy) do not matter
    diff = next((f"class {i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(tv.names, vv.names)) if a != b), None)
    if diff is None and len(tv.names) != len(vv.names):
        diff = f"{len(tv.names)} vs {len(vv.names)} classes"
    for field in ("background", "unlabelled", "ignore"):
        if diff is None and getattr(tv, field) != getattr(vv, field):
            diff = f"{field} {getattr(tv, field)} vs {getattr(vv, field)}"
    if diff is not None:
        raise SchemaError(f"{train_ds.folder / 'vocabulary.json'} and {val_ds.folder / 'vocabulary.json'} differ "
                          f"({diff}); expected the same class table (predictions would be scored against other classes)")
    train_ds.require("image", "training needs the images (was the data converted without --root?)")
    val_ds.require("image", "evaluation needs the images (was the data converted without --root?)")
    if cfg.data.full_supervision:
        train_ds.require("gt", "full supervision trains on it: convert the training split with --gt always")
    val_ds.require("gt", "evaluation needs the ground truth: convert the validation split with --gt always")


def _run_cam(r: _Run) -> Stage:
    """CAM labels for C (tags, boxes), on rank 0 while the other ranks wait."""
    # the CAM classifier and labels never see how stage 1 uses boxes
    cam = r.stages.open("cam", {**_key_section(r.cfg, "data", "model.backbone", "model.weights", "run.seed",
                                               drop=("data.box_candidates",)),
                               "train_data": r.weak_ds.fingerprint()}, [])
    if r.main and not cam.done:
        r.stages.finish(cam, _cam_stage(r.cfg, r.weak_ds, r.train_dir, cam.dir, r.device))
    if r.dist_on:
        torch.distributed.barrier()
    r.report["cam"] = _labels_report(cam)
    return cam


def _run_stage1(r: _Run, cam: Stage | None, final: bool):
    """SPML (data-parallel under torchrun) and its evaluation; ``(stage, model, metrics, skipped
    steps)`` on rank 0, ``None`` on the other ranks, which stop here."""
    cfg = r.cfg
    # optim.iterations is left out of the key: asking for more iterations continues the same stage
    # from its checkpoint (the poly schedule then stretches to the new length)
    optim = {k: v for k, v in _section(cfg, "optim")["optim"].items() if k != "iterations"}
    # data.cam reaches stage 1 only through the CAM stage's key (an input)
    # the training data's files (not only its path) are part of the key: re-converting into the
    # same folder must not reuse what was trained on the old data
    # data.box_candidates only matters for boxes
    drop = ("data.cam",) + (() if cfg.data.kind == "boxes" else ("data.box_candidates",))
    s1 = r.stages.open("stage1", {**_key_section(cfg, "data", "model", "segments", "loss", "run.seed",
                                                 drop=drop), "optim": optim,
                                  "train_data": r.weak_ds.fingerprint()}, [cam] if cam else [])
    trained = s1.summary().get("iterations") if s1.done else None
    if trained is not None and trained > cfg.optim.iterations:  # refused before anything is touched
        raise ConfigError(f"{s1.dir} holds a finished stage 1 of {trained} iterations, more than "
                          f"optim.iterations={cfg.optim.iterations}; ask for at least {trained} or use another run.dir")
    s1_done = trained == cfg.optim.iterations
    if r.dist_on:  # every rank has read done.json before rank 0 removes a stale one
        torch.distributed.barrier()
    if r.main and s1.done and not s1_done:  # more iterations asked for: continue from the checkpoint
        (s1.dir / "done.json").unlink()
    vocab = r.weak_ds.vocabulary
    if s1_done:
        model = load_trained(cfg, len(vocab), s1.dir, r.device)
        skipped = s1.summary().get("skipped_steps", 0)
    else:
        train_ds = _dataset(cfg, cam.dir / "data") if cam else r.weak_ds
        model, skipped = train_spml(cfg, train_ds, s1.dir, r.device, main_rank=r.main, dist_on=r.dist_on)
        if r.main:  # what follows uses the saved weights, as a later run reusing this stage does: the
            # same floats (the training copy can differ in layout, hence in the last bits)
            model = load_trained(cfg, len(vocab), s1.dir, r.device)
    if r.dist_on:  # the rest runs on rank 0 alone: long waits at a barrier would time out
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if not r.main:
        return None
    m1 = _evaluate(cfg, model, r.val_ds, vocab, s1.dir, r.device, r.weak_ds.flip_perm, final, r.run_dir,
                   f"{s1.key}@{cfg.optim.iterations}", s1_done)
    if cfg.eval.retrieval:
        # the memory holds the labelled segments C trained on: the CAM labels for tags and boxes
        m1["retrieval"] = _retrieval(cfg, model, cam.dir / "data" if cam else r.train_dir, r.val_ds, vocab,
                                     r.device)
    if not s1_done:
        r.stages.finish(s1, {"mIoU": m1["mIoU"], "iterations": cfg.optim.iterations, "skipped_steps": skipped})
    r.report["stage1"] = {"mIoU": m1["mIoU"], "dir": s1.dir.name}
    # what follows depends on the trained weights: stage 1's key plus its iteration count (a stage 1
    # continued to more iterations keeps its folder, but every later stage is redone)
    return Stage(s1.name, f"{s1.key}@{cfg.optim.iterations}", s1.dir), model, m1, skipped


def _run_stage2(r: _Run, s1: Stage, cam: Stage | None, model, rounds: int) -> dict | None:
    """Pseudo labels and a stage-2 head, ``rounds`` times; the last head's metrics (``None``: none)."""
    cfg, d, vocab = r.cfg, r.cfg.data, r.weak_ds.vocabulary
    scorer, prev, metrics = model, s1, None
    cam_model = _load_cam(cfg, cam, len(vocab.foreground), r.device) if cam and d.kind == "tags" else None
    for k in range(rounds):
        # tags start from CAMs: the CAM stage's classifier, or the external CAM arrays (data.cam.dir)
        source = "gt" if d.full_supervision else "cam" if d.kind == "tags" and k == 0 and cam is not None else "head"
        inputs = [s1] + ([cam] if source == "cam" else []) + ([prev] if prev is not s1 else [])
        ps = r.stages.open(f"pseudo{k + 1}", {**_section(cfg, "pseudo", "data.kind"), "source": source}, inputs)
        if not ps.done:
            r.stages.finish(ps, _pseudo_stage(cfg, model, scorer, cam_model, source, r.train_dir, ps.dir, vocab,
                                              r.device, r.weak_ds.flip_perm))
        r.report[ps.name] = _labels_report(ps)
        name = "stage2" + ("" if k == 0 else chr(ord("a") + k))
        # rounds is left out: a second round reuses the first
        s2_cfg = {key: v for key, v in _section(cfg, "stage2")["stage2"].items() if key != "rounds"}
        s2 = r.stages.open(name, {**_section(cfg, "data.crop", "data.scale_min", "data.scale_max", "data.flip",
                                             "data.batch_size", "run.seed"), "stage2": s2_cfg}, [ps])
        head = _stage2(cfg, model, ps.dir / "data", s2, r.device, len(vocab))
        metrics = _evaluate(cfg, head, r.val_ds, vocab, s2.dir, r.device, r.weak_ds.flip_perm, k == rounds - 1,
                            r.run_dir, s2.key, s2.done)
        if not s2.done:
            r.stages.finish(s2, {"mIoU": metrics["mIoU"]})
        r.report[name] = {"mIoU": metrics["mIoU"], "dir": s2.dir.name}
        scorer, prev = head, s2
    return metrics


# --------------------------------------------------------------------------- stages


def _cam_stage(cfg, weak_ds, train_dir: Path, out: Path, device: torch.device) -> dict:
    from spml_train.pseudo.cam import CAMNet, cam_labels, train_classifier

    c = cfg.data.cam
    vocab = weak_ds.vocabulary
    fg = list(vocab.foreground)
    seed_stage(cfg.run.seed, "cam")
    cam_dir = Path(c.dir) if c.dir else None
    net, losses = None, []
    if cam_dir is None:  # external CAMs need no network
        net = CAMNet(cfg.model.backbone, len(fg), weights=cfg.model.weights).to(device)
        losses = train_classifier(net, batches(weak_ds, cfg, 0, 0, alone=True), fg, c.iterations, c.lr, device,
                                  progress=cfg.run.progress)
        log.info("CAM classifier: BCE %.3f -> %.3f", losses[0], losses[-1])
        torch.save(net.state_dict(), out / "classifier.pt")
    summary = cam_labels(net, train_dir, cfg.data.train_split, out / "data", vocab, device, kind=cfg.data.kind,
                         alpha=c.alpha, threshold=c.threshold, cam_dir=cam_dir, scales=list(c.scales),
                         progress=cfg.run.progress)
    return {**summary, "bce": losses[::max(len(losses) // 10, 1)]}


def _load_cam(cfg, cam: Stage, num_fg: int, device: torch.device):
    from spml_train.pseudo.cam import CAMNet

    path = cam.dir / "classifier.pt"
    if not path.is_file():  # external CAMs: no classifier; the pseudo labels read the arrays instead
        return None
    net = CAMNet(cfg.model.backbone, num_fg, weights="none")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def pseudo_params(cfg, source: str):
    """The ``PseudoParams`` of a run's configuration for scores from ``source`` (head or cam)."""
    from spml_train.pseudo.crf import CRFParams
    from spml_train.pseudo.labels import PseudoParams

    p = cfg.pseudo
    crf = CRFParams(iterations=p.crf_iterations, gaussian_weight=p.crf_gaussian[0], gaussian_xy=p.crf_gaussian[1],
                    bilateral_weight=p.crf_bilateral[0], bilateral_xy=p.crf_bilateral[1],
                    bilateral_rgb=p.crf_bilateral[2])
    return PseudoParams(source=source, stride=p.stride, random_walk=p.random_walk, beta=p.beta, power=p.power,
                        log2_steps=p.log2_steps, crf=p.crf, crf_params=crf, alpha=cfg.data.cam.alpha,
                        box_constraint=p.box_constraint)


def _pseudo_stage(cfg, model, scorer, cam_model, source: str, train_dir: Path, out: Path, vocab, device,
                  flip_perm) -> dict:
    """Dense pseudo labels for the training split, from the original weak labels' classes."""
    from spml_train.data import normalize
    from spml_train.pseudo.labels import pseudo_label, relabel_split, weak_constraints

    import io

    from PIL import Image

    params = pseudo_params(cfg, "head" if source == "gt" else source)
    kind, C = cfg.data.kind, len(vocab)
    perm = torch.as_tensor(np.asarray(flip_perm)[:C], device=device).long() if cfg.data.flip_pairs else None

    class Scored(torch.nn.Module):  # the stage-1 embedding with the scoring classifier's head
        def forward(self, x):
            out = model(x)
            if scorer is not model:
                out["logits"] = scorer.classifier(out["embedding"])
            return out

    net = Scored()
    limit = cfg.pseudo.max_images
    seen = {"n": 0}

    def label(row: dict, rgb: np.ndarray, weak: np.ndarray) -> np.ndarray:
        if source == "gt":  # the fully supervised bound: the stage-2 head learns the ground truth
            if not row.get("gt"):
                raise ValueError(f"{train_dir}: item {row['image_id']!r} has no gt; full supervision needs "
                                 f"a split converted with --gt always")
            return np.array(Image.open(io.BytesIO(row["gt"]["bytes"])))
        if limit and seen["n"] >= limit:
            return np.where(weak < C, weak, vocab.ignore).astype(np.uint8)  # beyond the limit: weak labels only
        seen["n"] += 1
        present, allowed = weak_constraints(kind, row, weak, vocab, params.box_constraint)
        cams = None
        if source == "cam" and cam_model is None:  # external CAMs, checked by the CAM stage already
            cams = torch.from_numpy(np.load(Path(cfg.data.cam.dir) / f"{row['image_id']}.npy"))
        lab = pseudo_label(net, normalize(rgb).to(device), rgb, present, params, num_classes=C,
                           background=vocab.background, cam_model=cam_model, foreground=list(vocab.foreground),
                           cams=cams, allowed=allowed, flip_perm=perm, cam_scales=list(cfg.data.cam.scales))
        lab[weak == vocab.ignore] = vocab.ignore  # what the weak label ignores (crowd, void) stays ignored
        return lab

    model.eval()
    scorer.eval()
    return relabel_split(train_dir, cfg.data.train_split, out / "data", vocab, label,
                         {"stage": out.name, "source": source, "kind": kind}, progress=cfg.run.progress,
                         desc=out.name.split("-")[0])


def _stage2(cfg, model, data_dir: Path, st: Stage, device: torch.device, num_classes: int):
    from spml_train.pseudo.stage2 import stage2_model, train_head

    seed_stage(cfg.run.seed, st.name)  # the head's initialisation: the same with stage 1 cached or not
    head = stage2_model(model, num_classes)
    path = st.dir / "head.pt"
    if st.done and path.is_file():
        head.classifier.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return head.to(device)
    s = cfg.stage2
    ds = _dataset(cfg, data_dir, kind="dense", dense=True)
    B = s.batch_size or cfg.data.batch_size
    sub = OmegaConf.merge(cfg, {"data": {"batch_size": B}})
    with open(st.dir / "log.jsonl", "w") as logf:
        losses = train_head(head, batches(ds, sub, 0, 0, alone=True), s.iterations, s.lr, device, amp=cfg.run.amp,
                            warmup=s.warmup, warmup_factor=s.warmup_factor,
                            log_every=cfg.run.log_every, progress=cfg.run.progress, desc=st.name,
                            on_log=lambda rec: (logf.write(json.dumps(rec) + "\n"), logf.flush()))
    log.info("%s: cross-entropy %.3f -> %.3f", st.name, losses[0], losses[-1])
    torch.save(head.classifier.state_dict(), path)
    return head


def _evaluate(cfg, model, val_ds, vocab, out_dir: Path, device, flip_perm, final: bool, run_dir: Path,
              weights: str, trained_before: bool) -> dict:
    """Evaluate on the validation split into ``out_dir``; the final stage also writes predictions to
    ``run_dir/predictions`` (cleared first: none are left from an earlier run). ``weights`` names
    the model's weights (a stage key, with stage 1's iteration count): when they were already
    trained (``trained_before``) and evaluated with the same settings, ``metrics.json`` (and the
    final stage's predictions) are reused instead of evaluating again."""
    key = stage_key("eval", {**_section(cfg, "eval", "data.val", "data.val_split"), "val_data": val_ds.fingerprint()},
                    [weights])
    metrics_file, pred_dir = out_dir / "metrics.json", run_dir / "predictions"
    want_pred = cfg.eval.save_predictions and final
    if trained_before and metrics_file.is_file():
        m = json.loads(metrics_file.read_text())
        pred_key = (pred_dir / ".key").read_text() if (pred_dir / ".key").is_file() else None
        if m.get("eval_key") == key and (not want_pred or pred_key == key):
            log.info("%s: evaluation reused (same weights and settings)", out_dir.name)
            return m
    if final:
        shutil.rmtree(pred_dir, ignore_errors=True)
    loader = torch.utils.data.DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0,
                                         collate_fn=data_mod.collate)
    m = evaluate(model, loader, vocab, out_dir, device=device, scales=list(cfg.eval.scales), flip=cfg.eval.flip,
                 save_predictions=want_pred, max_images=cfg.eval.max_images,
                 split=cfg.data.val_split, flip_perm=flip_perm, crf=cfg.eval.crf, predictions_dir=pred_dir,
                 progress=cfg.run.progress)
    m["eval_key"] = key
    metrics_file.write_text(json.dumps(m, indent=2) + "\n")
    if want_pred:
        (pred_dir / ".key").write_text(key)
    return m


def _retrieval(cfg, model, train_dir: Path, val_ds, vocab, device) -> dict:
    from spml_train.evaluate import evaluate_retrieval

    d = cfg.data
    mem_ds = data_mod.ConvertedDataset(train_dir, d.train_split, kind=d.kind, train=False, dilate=d.dilate,
                                       labels="gt" if d.full_supervision else "weak")
    mem = torch.utils.data.DataLoader(mem_ds, batch_size=1, shuffle=False, num_workers=0, collate_fn=data_mod.collate)
    val = torch.utils.data.DataLoader(val_ds, batch_size=1, shuffle=False, num_workers=0, collate_fn=data_mod.collate)
    return evaluate_retrieval(model, mem, val, vocab, device=device, k=cfg.eval.retrieval_k, grid=cfg.eval.retrieval_grid,
                              max_train=cfg.eval.retrieval_train_images, max_images=cfg.eval.max_images,
                              progress=cfg.run.progress)


def _labels_report(st: Stage) -> dict:
    s = st.summary()
    keep = ("label_miou", "label_accuracy", "images", "images_per_s", "source")
    return {"dir": st.dir.name, "mIoU": None, **{k: s[k] for k in keep if k in s}}
