"""The training engine: devices, the SPML step, schedule, checkpoints, logs.

One step (``SPML.md`` sections 3-4): embeddings -> spherical k-means segments
(no autograd) -> segments ∩ regions ∩ labels and the relations
(``weaklabels.segsets``) -> differentiable prototypes -> SegSort+ terms for C,
O, V (and A) plus the joint softmax head's cross-entropy -> SGD. The memory
bank keeps the detached training segments (prototypes, label sets, tags) of the
last iterations for C and O.

Only this module knows about devices, autocast, checkpoints and logging; the
loss takes tensors and relations, never the configuration.

Stage 1's folder (``pipeline.py`` places it) holds ``log.jsonl`` and
``checkpoints/last.pt`` (written atomically every ``run.checkpoint_every``
steps, with model, optimiser, memory bank, RNG states and the data position, so
a resumed run continues exactly).
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spml_train import data as data_mod
from spml_train.config import ConfigError
from spml_train.loss import location_features, spml_loss
from spml_train.model import build_model, freeze_stem, lr_factor, param_groups
from spml_train.progress import Progress
from spml_train import distributed
from spml_train.segments import MemoryBank, segment_prototypes, segment_sums, spherical_kmeans, step_segments
from weaklabels.segsets import Memory, add_affinity, build_segment_sets
from weaklabels.types import Vocabulary

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    loss: torch.Tensor
    terms: dict[str, float]


def poly_lr(it: int, cfg) -> float:
    """Stage 1's learning-rate factor at step ``it`` (``model.lr_factor`` with ``cfg.optim``)."""
    o = cfg.optim
    return lr_factor(it, o.iterations, warmup=o.warmup, warmup_factor=o.warmup_factor, power=o.poly_power)


def _grid(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of an integer map ``(B, H, W)`` to the embedding grid."""
    return F.interpolate(t[:, None].float(), size=size, mode="nearest")[:, 0].long()


def train_step(model, batch: dict, cfg, vocab: Vocabulary, bank: MemoryBank, device: torch.device) -> StepResult:
    """Forward and loss of one batch (no optimiser step)."""
    C = len(vocab)
    images = batch["image"].to(device, non_blocking=True)
    if cfg.run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.run.amp and device.type == "cuda"):
        out = model(images)
    emb = out["embedding"].float()  # the loss runs in fp32: exp(kappa * cos) overflows half precision
    B, D, h, w = emb.shape
    label = _grid(batch["label"].to(device), (h, w))
    region = _grid(batch["region"].to(device), (h, w))
    tags = batch["tags"].to(device)
    valid = label != vocab.ignore
    cluster = spherical_kmeans(emb.detach(), valid, grid=cfg.segments.grid, iters=cfg.segments.iterations)
    cand = None
    if cfg.data.kind == "boxes" and cfg.data.box_candidates and not cfg.data.full_supervision:
        stride = batch["label"].shape[-1] / w
        cand = data_mod.candidate_grid(batch["boxes"], C, vocab.background, h, w, stride).to(device)
    mem_protos, memory = bank.get()
    table = dict(num_classes=C, unlabelled=vocab.unlabelled, ignore=vocab.ignore, background=vocab.background,
                 candidates=cand)
    remote = None
    if distributed.active():
        # the other ranks' segments join C and O like memory segments, with their gradients
        local = build_segment_sets(cluster, label, region, tags, **table)
        S = local.num_batch_segments
        emb_flat = emb.permute(0, 2, 3, 1).reshape(-1, D)
        remote, r_sets, r_tags = distributed.gather_segments(
            segment_sums(emb_flat, local.pixel_segment, S), local.count[:S], local.label_set[:S], local.tags[:S])
        if len(bank):
            r_sets = torch.cat([r_sets, memory.label_set.to(device)])
            r_tags = torch.cat([r_tags, memory.tags.to(device)])
        memory = Memory(r_sets, r_tags)
    sets = build_segment_sets(cluster, label, region, tags, memory=memory if len(memory) else None, **table)
    L = cfg.loss
    if L.lambda_a:
        with torch.no_grad():  # A's location-weighted prototypes only pick which labels propagate
            loc_protos = segment_prototypes(location_features(emb), sets.pixel_segment, sets.num_batch_segments)
        add_affinity(sets, loc_protos, L.affinity_threshold)
    lambdas = {k: v for k, v in {"C": L.lambda_c, "O": L.lambda_o, "V": L.lambda_v, "A": L.lambda_a}.items() if v}
    kappas = {"C": L.kappa_c, "O": L.kappa_o, "V": L.kappa_v, "A": L.kappa_a}
    total, terms = spml_loss(emb, sets, lambdas, kappas, memory_prototypes=mem_protos.to(device) if len(bank) else None,
                             remote_prototypes=remote, chunk=L.chunk)
    # joint softmax head: cross-entropy on pixels with one class (the head sees a detached embedding)
    target = torch.where(label < C, label, torch.full_like(label, -100))
    logits = out["logits"].float()
    ce = F.cross_entropy(logits, target, ignore_index=-100) if (target >= 0).any() else logits.sum() * 0
    total = total + L.lambda_c * ce
    terms["CE"] = ce.detach()
    if bank.iterations:
        # the memory bank keeps this step's own training segments (SPML.md section 3.7, as the
        # reference pushes its batch prototypes); the finer grid of section 3.3 is the inference
        # memory of eval.retrieval, not this bank
        with torch.no_grad():
            mp, m_sets, m_tags = step_segments(emb, sets)
            if distributed.active():  # every rank keeps the whole global batch's memory
                mp, m_sets, m_tags = (distributed.all_gather_detached(x.float()) for x in (mp, m_sets, m_tags))
                m_sets, m_tags = m_sets > 0.5, m_tags > 0.5
            bank.push(mp, m_sets, m_tags)
    return StepResult(total, {k: float(v) for k, v in terms.items()})


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, model, optimizer, bank: MemoryBank, it: int, epoch: int, position: int,
                    skipped: int = 0) -> None:
    """Everything needed to continue exactly; written to a temporary name, then renamed."""
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "memory": bank.state_dict(),
        "iteration": it, "epoch": epoch, "position": position, "skipped_steps": skipped,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model, optimizer, bank: MemoryBank) -> tuple[int, int, int, int]:
    """Restore a ``save_checkpoint`` state; returns ``(iteration, epoch, position, skipped steps)``."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    bank.load_state_dict(state["memory"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state["iteration"], state["epoch"], state["position"], state.get("skipped_steps", 0)


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop the records of steps after ``iteration`` (logged before an interruption, redone now)."""
    if not path.is_file():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError:  # a line torn by the interruption (or a full disk)
            continue
        if isinstance(rec, dict) and rec.get("iter", 0) <= iteration:
            keep.append(ln)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- data order


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch, started at ``position`` (items of the global batch already
    consumed), so resuming mid-epoch replays nothing; under data parallelism each rank takes every
    ``size``-th item from its ``rank``."""

    def __init__(self, n: int, seed: int, epoch: int, position: int = 0, rank: int = 0, size: int = 1):
        self.n, self.seed, self.epoch, self.position, self.rank, self.size = n, seed, epoch, position, rank, size

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(self.n, generator=g)[self.position:][self.rank::self.size].tolist()

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def batches(dataset, cfg, epoch: int, position: int, *, alone: bool = False):
    """Yield ``(epoch, position_after, batch)`` forever, epoch after epoch; ``position`` counts the
    items of the global batch, this rank's batch is its share of it. ``alone``: the whole batch for
    this process even under torchrun (stages that rank 0 runs by itself)."""
    rank, size = (0, 1) if alone or not distributed.active() else distributed.world()[:2]
    B = cfg.data.batch_size
    if B % size:
        raise ConfigError(f"data.batch_size={B} does not split over {size} processes")
    usable = len(dataset) - len(dataset) % size
    if usable < B:  # full batches only (drop_last): none at all would loop here forever
        raise ConfigError(f"the training split has {len(dataset)} images, fewer than data.batch_size={B}; "
                          f"expected at least one full batch (lower data.batch_size)")
    while True:
        dataset.epoch = epoch
        sampler = EpochSampler(usable, cfg.run.seed, epoch, position, rank, size)
        # The loader draws its workers' base seed from `generator`: a dedicated one keeps the global
        # RNG (dropout) untouched, so a resumed run draws exactly what the uninterrupted one did.
        gen = torch.Generator().manual_seed(cfg.run.seed * 100003 + epoch)
        dl = torch.utils.data.DataLoader(dataset, batch_size=B // size, sampler=sampler, drop_last=True,
                                         num_workers=cfg.data.workers, collate_fn=data_mod.collate,
                                         worker_init_fn=data_mod._worker_init, generator=gen)
        for batch in dl:
            position += B
            yield epoch, position, batch
        epoch, position = epoch + 1, 0


# --------------------------------------------------------------------------- run


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("run.device=cuda but no CUDA device is available; use run.device=cpu")
    return torch.device(name)


class _StopAfterStep:
    """While active (in the main thread), the first Ctrl-C or SIGTERM (a scheduler's preemption,
    torchrun's agent passing on a Ctrl-C) asks the training loop to stop after the current step, so
    that it saves a checkpoint first (nothing lost); a second signal stops at once. Under torchrun
    the ranks agree on the step through the all-reduce every step already does."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.enabled = threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s: stopping after this step and saving a checkpoint (again: at once)",
                    signal.Signals(signum).name)

    def __enter__(self) -> "_StopAfterStep":
        if self.enabled:
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)


def seed_stage(seed: int, stage: str) -> None:
    """Seed torch, numpy and ``random`` from ``(run seed, stage name)``: a stage starts from the same
    random state (its network's initialisation included) whether the stages before it ran in this
    process or came from the cache."""
    t, n = np.random.SeedSequence([seed, zlib.crc32(stage.encode())]).generate_state(2)
    torch.manual_seed(int(t))
    np.random.seed(int(n))
    random.seed(int(t))


def train_spml(cfg, train_ds, stage_dir: Path, device: torch.device, *, main_rank: bool = True,
               dist_on: bool = False):
    """Stage 1: train SPML on ``train_ds`` (resuming from ``stage_dir/checkpoints/last.pt``); returns
    the trained network (unwrapped from DDP) and the number of skipped steps.

    Under ``torchrun`` each rank takes its share of the global batch, batch norm is synchronised
    (CUDA), and segments are exchanged as sums and counts (``distributed.py``); rank 0 writes
    checkpoints and logs.
    """
    _, size, local_rank = distributed.world()
    vocab = train_ds.vocabulary
    seed_stage(cfg.run.seed, "stage1")  # a resumed run then restores the checkpoint's RNG state
    model = build_model(cfg.model.backbone, cfg.model.embedding, cfg.model.dim, len(vocab),
                        weights=cfg.model.weights, psp_channels=cfg.model.psp_channels)
    freeze_stem(model)
    if dist_on and device.type == "cuda":  # SyncBatchNorm is CUDA-only; CPU ranks keep local statistics
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg.optim.lr, cfg.optim.weight_decay)
    optimizer = torch.optim.SGD(groups, lr=cfg.optim.lr, momentum=cfg.optim.momentum)
    bank = MemoryBank(cfg.segments.memory_iterations)

    ckpt = stage_dir / "checkpoints" / "last.pt"
    start, epoch, position, skipped = 0, 0, 0, 0
    if cfg.run.resume and ckpt.is_file():
        start, epoch, position, skipped = load_checkpoint(ckpt, model, optimizer, bank)
        log.info("resumed from %s at iteration %d", ckpt, start)
        if start > cfg.optim.iterations:
            raise ConfigError(f"{ckpt} holds {start} iterations of stage 1, more than optim.iterations="
                             f"{cfg.optim.iterations}; ask for at least {start} or use another run.dir")
    plain = model
    if dist_on:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None)

    if main_rank:
        _truncate_log(stage_dir / "log.jsonl", start)
    logf = open(stage_dir / "log.jsonl", "a") if main_rank else None
    board = None
    if main_rank:
        try:  # TensorBoard when installed; the JSONL log is always written
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(str(stage_dir / "tensorboard"))
        except ImportError:
            log.info("tensorboard is not installed: logging to log.jsonl only")
    bar = Progress(cfg.optim.iterations, f"{cfg.name} stage 1", enabled=main_rank and cfg.run.progress, initial=start)
    stream = batches(train_ds, cfg, epoch, position)
    model.train()
    t_last, n_img = time.perf_counter(), 0
    it = start
    stop, stop_now = _StopAfterStep(), False
    with stop:
        while it < cfg.optim.iterations:
            if stop_now:
                if main_rank:
                    save_checkpoint(ckpt, plain, optimizer, bank, it, epoch, position, skipped)
                    log.info("saved %s at iteration %d: run the same command to resume", ckpt, it)
                raise KeyboardInterrupt
            epoch, position, batch = next(stream)
            factor = poly_lr(it, cfg)
            for g in optimizer.param_groups:
                g["lr"] = cfg.optim.lr * factor * g["lr_mult"]
            res = train_step(model, batch, cfg, vocab, bank, device)
            optimizer.zero_grad(set_to_none=True)
            # [non-finite loss, stop asked]: every rank skips / stops at the same step, or DDP's
            # gradient exchange would hang
            flags = torch.tensor([0.0 if torch.isfinite(res.loss) else 1.0, float(stop.requested)], device=device)
            if dist_on:
                torch.distributed.all_reduce(flags)
            skip, stop_now = (bool(v) for v in flags.tolist())
            if skip:
                # a non-finite loss would poison the weights: skip the step, keep the record
                skipped += 1
                if logf:
                    logf.write(json.dumps({"iter": it + 1, "nonfinite_loss": True, "terms": res.terms}) + "\n")
                    logf.flush()
            else:
                res.loss.backward()
                optimizer.step()
            it += 1
            if main_rank and (it % cfg.run.checkpoint_every == 0 or it == cfg.optim.iterations):
                save_checkpoint(ckpt, plain, optimizer, bank, it, epoch, position, skipped)
            if skip:
                bar.update(1)
                continue
            n_img += len(batch["image"]) * size  # the global batch
            if logf and (it % cfg.run.log_every == 0 or it == cfg.optim.iterations):
                now = time.perf_counter()
                rec = {"iter": it, "lr": cfg.optim.lr * factor, "loss": float(res.loss.detach()), **res.terms,
                       "images_per_s": n_img / max(now - t_last, 1e-9), "skipped_steps": skipped}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                if board is not None:
                    for k, v in rec.items():
                        if k != "iter":
                            board.add_scalar(f"train/{k}", v, it)
                t_last, n_img = now, 0
                bar.update(0, **res.terms, images_per_s=rec["images_per_s"])
            bar.update(1)
    if stop_now or stop.requested:  # during the last step: its checkpoint is written, the stop stands
        raise KeyboardInterrupt
    bar.close()
    if logf:
        logf.close()
    if board is not None:
        board.close()
    return plain, skipped


def load_trained(cfg, num_classes: int, stage_dir: Path, device: torch.device):
    """The stage-1 network saved in ``stage_dir/checkpoints/last.pt``."""
    model = build_model(cfg.model.backbone, cfg.model.embedding, cfg.model.dim, num_classes,
                        weights="none", psp_channels=cfg.model.psp_channels)
    freeze_stem(model)
    state = torch.load(stage_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    model.to(device)
    if cfg.run.channels_last:  # the layout the network trained in (and the faster one)
        model.to(memory_format=torch.channels_last)
    return model


def chance_miou(num_classes: int) -> float:
    """mIoU (0..100) of predicting uniformly at random, for orientation."""
    return 100.0 / (2 * num_classes - 1) if num_classes else 0.0

