"""The engine: schedule, exact resume, the NaN guard, and a short toy training that must learn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize

from spml_train import engine, pipeline
from spml_train.config import register
from spml_train.engine import chance_miou, poly_lr
from weaklabels.types import Vocabulary

register()


def _cfg(*overrides: str):
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="spml", overrides=list(overrides))


def _small(recipe: str, run_dir: Path, *more: str):
    return _cfg(f"recipe={recipe}", f"run.dir={run_dir}", "data.shapes.num_train=24", "data.shapes.num_val=8",
                "data.workers=0", "data.batch_size=4", "eval.max_images=4", "run.progress=false",
                "stage2.enabled=false", *more)


def test_poly_schedule_with_warmup():
    cfg = _cfg("recipe=toy_tags", "optim.iterations=100", "optim.warmup=10", "optim.warmup_factor=0.1")
    assert poly_lr(0, cfg) == pytest.approx(0.1)
    assert poly_lr(5, cfg) == pytest.approx(0.55)
    assert poly_lr(10, cfg) == pytest.approx((1 - 10 / 100) ** 0.9)
    assert poly_lr(99, cfg) < 0.02


def _weights(run_dir: Path) -> dict:
    return torch.load(pipeline.stage_dirs(run_dir)["stage1"] / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_resume_continues_exactly(tmp_path):
    full = tmp_path / "full"
    pipeline.run(_small("toy_scribbles", full, "optim.iterations=6", "run.checkpoint_every=3"), full)
    part = tmp_path / "part"
    pipeline.run(_small("toy_scribbles", part, "optim.iterations=3", "run.checkpoint_every=3"), part)
    # same run directory, more iterations: continues from iteration 3
    pipeline.run(_small("toy_scribbles", part, "optim.iterations=6", "run.checkpoint_every=3"), part)
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    state = torch.load(pipeline.stage_dirs(part)["stage1"] / "checkpoints" / "last.pt", weights_only=False)
    assert state["iteration"] == 6 and len(state["memory"]) > 0


def _poison_step(monkeypatch, step: int) -> None:
    """Make the loss of training step ``step`` (1-based) NaN."""
    real = engine.train_step
    calls = {"n": 0}

    def poisoned(*a, **k):
        res = real(*a, **k)
        calls["n"] += 1
        if calls["n"] == step:
            res.loss = res.loss * float("nan")
        return res

    monkeypatch.setattr(engine, "train_step", poisoned)


def test_nonfinite_loss_skips_the_step(tmp_path, monkeypatch):
    _poison_step(monkeypatch, 2)
    run_dir = tmp_path / "nan"
    metrics = pipeline.run(_small("toy_tags", run_dir, "optim.iterations=3"), run_dir)
    lines = [json.loads(x) for x in (pipeline.stage_dirs(run_dir)["stage1"] / "log.jsonl").read_text().splitlines()]
    assert any(x.get("nonfinite_loss") for x in lines) and metrics["skipped_steps"] == 1
    for v in _weights(run_dir).values():
        assert torch.isfinite(v.float()).all()


@pytest.mark.slow
def test_toy_training_learns(tmp_path):
    """The CI training check: a short toy run, the loss falls and mIoU clearly beats chance."""
    run_dir = tmp_path / "toy"
    cfg = _cfg("recipe=toy_scribbles", f"run.dir={run_dir}", "data.shapes.num_train=96", "data.shapes.num_val=24",
               "optim.iterations=60", "run.log_every=10", "run.progress=false", "data.workers=0",
               "stage2.enabled=false")
    metrics = pipeline.run(cfg, run_dir)
    log = [json.loads(x) for x in (pipeline.stage_dirs(run_dir)["stage1"] / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    assert metrics["mIoU"] > 3 * chance_miou(6), metrics["mIoU"]  # chance: 9.1 for 6 classes
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert set(saved) >= {"mIoU", "per_class_iou", "split"} and 0 <= saved["mIoU"] <= 100


def test_flip_prediction_maps_left_and_right_back():
    from spml_train.evaluate import predict

    class Lefty(torch.nn.Module):
        """Predicts class 1 ("left") on the left half, class 2 ("right") on the right half, by position."""

        def forward(self, x):
            B, _, H, W = x.shape
            logits = torch.zeros(B, 3, H, W)
            # a symmetric network would see the same image flipped; make the answer depend on the colour
            # channel the flip leaves alone, and on the left/right class the flip swaps
            logits[:, 1, :, : W // 2] = 5
            logits[:, 2, :, W // 2:] = 5
            return {"logits": logits}

    img = torch.zeros(3, 4, 8)
    plain = predict(Lefty(), img, [1.0], False).argmax(0)
    perm = torch.tensor([0, 2, 1])
    flipped = predict(Lefty(), img, [1.0], True, perm).argmax(0)
    # the flipped view says "right" on the left half; the permutation turns it back into "left"
    assert torch.equal(plain, flipped)
    # and the flipped view is really used: without the permutation it contradicts the plain one
    # everywhere, so the two views tie (probabilities 1/2 for classes 1 and 2 on every pixel)
    tied = predict(Lefty(), img, [1.0], True)
    assert torch.allclose(tied[1], tied[2]) and not torch.allclose(tied[1], plain.eq(1).float())


def test_retrieval_memory_labels_segments_by_their_labelled_pixels():
    from spml_train.evaluate import retrieval_memory

    class Quadrants(torch.nn.Module):
        """Embedding e_k on grid quadrant k: k-means on a 2 x 2 grid finds the four quadrants."""

        def forward(self, x):
            B, _, H, W = x.shape
            h, w = H // 4, W // 4
            emb = torch.zeros(B, 4, h, w)
            for k, (ys, xs) in enumerate([(slice(0, h // 2), slice(0, w // 2)), (slice(0, h // 2), slice(w // 2, w)),
                                          (slice(h // 2, h), slice(0, w // 2)), (slice(h // 2, h), slice(w // 2, w))]):
                emb[:, k, ys, xs] = 1
            return {"embedding": emb}

    weak = torch.full((16, 32), 254)            # unlabelled
    weak[:8, :16] = 1                           # quadrant 0: class 1
    weak[:8, 16:] = 0                           # quadrant 1: background
    weak[8:, :16][0, :3] = 2                    # quadrant 2: three class-2 pixels (the rest unlabelled)
    weak[8:, 16:] = 255                         # quadrant 3: ignore only -> no labelled segment
    batch = {"image": torch.zeros(1, 3, 16, 32), "gt": weak[None]}
    protos, classes = retrieval_memory(Quadrants(), [batch], Vocabulary(("background", "a", "b")),
                                       torch.device("cpu"), grid=2)
    found = {int(p.argmax()): int(c) for p, c in zip(protos, classes)}
    assert found == {0: 1, 1: 0, 2: 2}          # quadrant -> majority class; quadrant 3 left out


def test_retrieval_votes_with_the_nearest_labelled_segments():
    from spml_train.evaluate import predict_retrieval

    class Halves(torch.nn.Module):
        """Embedding e_0 on the left half of the grid and e_1 on the right half."""

        def forward(self, x):
            B, _, H, W = x.shape
            emb = torch.zeros(B, 4, H // 4, W // 4)
            emb[:, 0, :, : W // 8] = 1
            emb[:, 1, :, W // 8:] = 1
            return {"embedding": emb}

    memory = (torch.eye(4)[[0, 0, 0, 1, 1]], torch.tensor([2, 2, 1, 3, 3]))
    pred = predict_retrieval(Halves(), torch.zeros(3, 16, 32), memory, 4, k=3, grid=2)
    assert pred.shape == (16, 32)
    assert (pred[:, :16] == 2).all() and (pred[:, 16:] == 3).all()  # majority of the 3 nearest


def test_nonfinite_last_step_still_checkpoints(tmp_path, monkeypatch):
    _poison_step(monkeypatch, 3)  # the last of three steps
    run_dir = tmp_path / "nanlast"
    pipeline.run(_small("toy_scribbles", run_dir, "optim.iterations=3", "run.checkpoint_every=100"), run_dir)
    state = torch.load(pipeline.stage_dirs(run_dir)["stage1"] / "checkpoints" / "last.pt", weights_only=False)
    assert state["iteration"] == 3


def test_fewer_iterations_than_trained_is_an_error(tmp_path):
    run_dir = tmp_path / "fewer"
    pipeline.run(_small("toy_scribbles", run_dir, "optim.iterations=3"), run_dir)
    with pytest.raises(ValueError, match="more than optim.iterations=2"):
        pipeline.run(_small("toy_scribbles", run_dir, "optim.iterations=2"), run_dir)
    # refused before anything was touched: the finished stage is still finished
    assert (pipeline.stage_dirs(run_dir)["stage1"] / "done.json").is_file()


def test_interrupted_run_resumes_without_duplicate_logs(tmp_path, monkeypatch):
    _poison_step(monkeypatch, 2)
    real = engine.train_step
    calls = {"n": 0}

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at 3 and the log record of step 4
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", interrupting)
    run_dir = tmp_path / "cut"
    more = ("optim.iterations=6", "run.checkpoint_every=3", "run.log_every=1")
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(_small("toy_scribbles", run_dir, *more), run_dir)
    log_file = pipeline.stage_dirs(run_dir)["stage1"] / "log.jsonl"
    assert [json.loads(x)["iter"] for x in log_file.read_text().splitlines()] == [1, 2, 3, 4]
    monkeypatch.setattr(engine, "train_step", real)
    metrics = pipeline.run(_small("toy_scribbles", run_dir, *more), run_dir)
    iters = [json.loads(x)["iter"] for x in log_file.read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5, 6]  # step 4 redone after the resume at 3, logged once
    assert metrics["skipped_steps"] == 1  # the NaN step before the checkpoint is still counted


def test_log_truncation_skips_a_torn_line(tmp_path):
    log_file = tmp_path / "log.jsonl"
    log_file.write_text('{"iter": 1, "loss": 2.0}\n{"iter": 2, "loss": 1.5}\n{"iter": 3, "nonfinite_loss": tr')
    engine._truncate_log(log_file, 2)
    assert [json.loads(x)["iter"] for x in log_file.read_text().splitlines()] == [1, 2]


def test_memory_bank_keeps_the_steps_training_segments(monkeypatch):
    """SPML.md 3.7: the bank holds each step's own (detached) training segments, built once per step;
    no second, finer clustering (3.3's finer grid is the inference memory of eval.retrieval)."""
    from spml_train.model import build_model
    from spml_train.segments import MemoryBank, segment_prototypes

    cfg = _cfg("recipe=toy_scribbles", "segments.memory_iterations=2")
    vocab = Vocabulary(["background", "a", "b"])
    C = len(vocab)
    torch.manual_seed(0)
    model = build_model("resnet_tiny", "aspp", 8, C, weights="none")
    B, H, W = 2, 32, 32
    label = torch.full((B, H, W), vocab.unlabelled, dtype=torch.long)
    label[:, :8] = 0
    label[0, 20:, 20:] = 1
    label[1, 20:, :10] = 2
    label[1, 30:] = vocab.ignore
    batch = {"image": torch.randn(B, 3, H, W), "label": label,
             "region": (torch.arange(W) // 16).expand(B, H, W).contiguous(),
             "tags": torch.tensor([[0, 1, 0], [0, 0, 1]], dtype=torch.bool)}
    built, clustered = [], []
    real_build, real_kmeans = engine.build_segment_sets, engine.spherical_kmeans
    monkeypatch.setattr(engine, "build_segment_sets", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    monkeypatch.setattr(engine, "spherical_kmeans", lambda *a, **k: clustered.append(1) or real_kmeans(*a, **k))
    bank = MemoryBank(cfg.segments.memory_iterations)
    model.eval()  # deterministic forward: the embedding below is the one the step saw
    for step in range(3):
        built.clear(), clustered.clear()
        engine.train_step(model, batch, cfg, vocab, bank, torch.device("cpu"))
        assert len(built) == 1 and len(clustered) == 1
        sets = built[0]
        S = sets.num_batch_segments
        protos, memory = bank.get()
        assert len(bank) == S * min(step + 1, 2)        # the last two steps' segments
        assert torch.equal(memory.label_set[-S:], sets.label_set[:S])
        assert torch.equal(memory.tags[-S:], sets.tags[:S])
        with torch.no_grad():
            emb = model(batch["image"])["embedding"].float()
            emb_flat = emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1])
            torch.testing.assert_close(protos[-S:], segment_prototypes(emb_flat, sets.pixel_segment, S))


def test_ctrl_c_finishes_the_step_and_saves_a_checkpoint(tmp_path, monkeypatch):
    """A real SIGINT in stage 1 (toy recipes checkpoint only every 200 steps): the step in progress
    completes, a checkpoint is written at it, and the rerun resumes there and ends with the same
    weights as an uninterrupted run. Data-loader workers ignore the signal (they must outlive it)."""
    import os
    import signal

    full = tmp_path / "full"
    more = ("optim.iterations=5", "run.checkpoint_every=200", "data.workers=1")
    pipeline.run(_small("toy_scribbles", full, *more), full)
    real = engine.train_step
    calls = {"n": 0}

    def ctrl_c(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)   # arrives in the middle of step 3
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_step", ctrl_c)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(_small("toy_scribbles", cut, *more), cut)
    ckpt = pipeline.stage_dirs(cut)["stage1"] / "checkpoints" / "last.pt"
    assert torch.load(ckpt, weights_only=False)["iteration"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the handlers are restored
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    monkeypatch.setattr(engine, "train_step", real)
    pipeline.run(_small("toy_scribbles", cut, *more), cut)
    a, b = _weights(full), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("candidates", [False, True])
def test_box_candidate_sets_enter_c_only_when_asked(monkeypatch, candidates):
    """SPML.md section 6: inside a box, pixels without a CAM label stay unlabelled (out of C);
    data.box_candidates=true gives them the set {box class, background} in C instead."""
    from spml_train.model import build_model
    from spml_train.segments import MemoryBank

    cfg = _cfg("recipe=toy_boxes", f"data.box_candidates={candidates}")
    vocab = Vocabulary(["background", "a"])
    U = vocab.unlabelled
    label = torch.zeros(1, 32, 32, dtype=torch.long)
    label[0, 8:24, 8:24] = U             # the box: no CAM label ...
    label[0, 12:20, 12:20] = 1           # ... but its core
    batch = {"image": torch.randn(1, 3, 32, 32), "label": label, "region": torch.zeros(1, 32, 32, dtype=torch.long),
             "tags": torch.tensor([[False, True]]), "boxes": [torch.tensor([[8.0, 8.0, 24.0, 24.0, 1.0]])]}
    built = []
    real_build = engine.build_segment_sets
    monkeypatch.setattr(engine, "build_segment_sets", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    model = build_model("resnet_tiny", "aspp", 8, 2, weights="none")
    engine.train_step(model, batch, cfg, vocab, MemoryBank(0), torch.device("cpu"))
    c = built[0].relations["C"]
    lab = torch.nn.functional.interpolate(label[:, None].float(), size=(8, 8), mode="nearest")[0, 0].long().ravel()
    in_c = torch.zeros(64, dtype=torch.bool)
    in_c[c.pixels] = True
    assert in_c[lab != U].all()                       # background and the CAM-labelled core
    assert bool(in_c[lab == U].any()) == candidates   # the rest of the box only as candidate sets
