"""Data parallelism on the CPU (gloo): two ranks exchange segment sums and stay in sync."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spml_train.pipeline import stage_dirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _setup(rank: int, size: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _gather_worker(rank: int, size: int, port: int, out: str) -> None:
    _setup(rank, size, port)
    from spml_train import distributed

    distributed.init("cpu")
    g = torch.Generator().manual_seed(rank)
    n = 3 + rank  # ranks hold different numbers of segments
    sums = torch.randn(n, 4, generator=g, requires_grad=True)
    label_set = torch.zeros(n, 5, dtype=torch.bool)
    label_set[:, rank] = True
    tags = torch.zeros(n, 5, dtype=torch.bool)
    protos, sets, tgs = distributed.gather_segments(sums, torch.ones(n), label_set, tags)
    protos.sum().backward()  # gradients return to the rank owning the segments
    torch.save({"protos": protos.detach(), "sets": sets, "sums": sums.detach(), "grad": sums.grad}, f"{out}/{rank}.pt")
    dist.barrier()  # neither rank tears the connection down while the other still uses it
    dist.destroy_process_group()


def test_gather_segments_exchanges_sums_with_gradients(tmp_path):
    mp.spawn(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert torch.allclose(r0["protos"], torch.nn.functional.normalize(r1["sums"], dim=1))
    assert torch.allclose(r1["protos"], torch.nn.functional.normalize(r0["sums"], dim=1))
    assert r0["sets"][:, 1].all() and r1["sets"][:, 0].all()
    assert r0["grad"] is not None and r0["grad"].abs().sum() > 0


def _train_worker(rank: int, size: int, port: int, run_dir: str) -> None:
    _setup(rank, size, port)
    from hydra import compose, initialize

    from spml_train import pipeline
    from spml_train.config import register

    register()
    with initialize(version_base="1.3", config_path=None):
        cfg = compose(config_name="spml", overrides=[
            "recipe=toy_boxes", f"run.dir={run_dir}", "data.shapes.num_train=16", "data.shapes.num_val=4",
            "data.workers=0", "data.batch_size=4", "optim.iterations=3", "run.progress=false",
            "data.cam.iterations=2", "stage2.iterations=2"])
    metrics = pipeline.run(cfg, Path(run_dir))
    assert (metrics is not None) == (rank == 0)  # rank 0 evaluates and reports


@pytest.mark.slow
def test_two_ranks_train_and_rank0_evaluates(tmp_path):
    """Every stage under two ranks: the CAM stage on rank 0 while rank 1 waits, stage 1 on both,
    then rank 0 alone for the pseudo labels and stage 2 (rank 1 returns)."""
    run_dir = tmp_path / "ddp"
    mp.spawn(_train_worker, args=(2, _free_port(), str(run_dir)), nprocs=2, join=True)
    dirs = stage_dirs(run_dir)
    assert list(dirs) == ["cam", "stage1", "pseudo1", "stage2"]
    assert all((d / "done.json").is_file() for d in dirs.values())
    assert (run_dir / "metrics.json").is_file() and (stage_dirs(run_dir)["stage1"] / "checkpoints" / "last.pt").is_file()
    logged = (stage_dirs(run_dir)["stage1"] / "log.jsonl").read_text().splitlines()
    assert logged  # rank 0 logs


def _interrupted_worker(rank: int, size: int, port: int, run_dir: str) -> None:
    _setup(rank, size, port)
    import signal

    from hydra import compose, initialize

    from spml_train import engine, pipeline
    from spml_train.config import register

    real, calls = engine.train_step, {"n": 0}

    def step(*a, **k):
        calls["n"] += 1
        if rank == 1 and calls["n"] == 3:   # only rank 1 is signalled, in the middle of step 3
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    engine.train_step = step
    register()
    with initialize(version_base="1.3", config_path=None):
        cfg = compose(config_name="spml", overrides=[
            "recipe=toy_scribbles", f"run.dir={run_dir}", "data.shapes.num_train=16", "data.shapes.num_val=4",
            "data.workers=0", "data.batch_size=4", "optim.iterations=8", "run.checkpoint_every=100",
            "run.progress=false"])
    try:
        pipeline.run(cfg, Path(run_dir))
    except KeyboardInterrupt:
        Path(run_dir, f"stopped{rank}").write_text(str(calls["n"]))


@pytest.mark.slow
def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    """SIGTERM (or Ctrl-C) reaching one rank: the ranks agree through the step's all-reduce, every
    one stops after step 3 (none waits forever in a collective), and rank 0 saves that step."""
    run_dir = tmp_path / "ddp"
    mp.spawn(_interrupted_worker, args=(2, _free_port(), str(run_dir)), nprocs=2, join=True)
    assert [(run_dir / f"stopped{r}").read_text() for r in (0, 1)] == ["3", "3"]
    ckpt = stage_dirs(run_dir)["stage1"] / "checkpoints" / "last.pt"
    assert torch.load(ckpt, weights_only=False)["iteration"] == 3
