"""The stage pipeline: plans per annotation type, hash-keyed caching, resume at the first stage not done."""

from __future__ import annotations

import json
import re

import pytest
from hydra import compose, initialize

from spml_train import pipeline
from spml_train.evaluate import evaluate
from spml_train.config import register
from spml_train.pipeline import plan, stage_dirs, stage_key

register()


def _cfg(*overrides: str):
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="spml", overrides=list(overrides))


def _tiny(recipe: str, run_dir, *more: str):
    return _cfg(f"recipe={recipe}", f"run.dir={run_dir}", "data.shapes.num_train=12", "data.shapes.num_val=4",
                "data.workers=0", "data.batch_size=4", "eval.max_images=4", "run.progress=false",
                "optim.iterations=2", "data.cam.iterations=2", "stage2.iterations=2", *more)


@pytest.mark.parametrize("recipe,stages", [
    ("toy_tags", ["cam", "stage1", "pseudo1", "stage2", "pseudo2", "stage2b"]),
    ("toy_boxes", ["cam", "stage1", "pseudo1", "stage2"]),
    ("toy_scribbles", ["stage1", "pseudo1", "stage2"]),
    ("toy_points", ["stage1", "pseudo1", "stage2"]),
    ("toy_full", ["stage1", "pseudo1", "stage2"]),
    ("voc_tags", ["cam", "stage1", "pseudo1", "stage2", "pseudo2", "stage2b"]),
    ("voc_scribbles", ["stage1", "pseudo1", "stage2"]),
])
def test_plan_per_recipe(recipe, stages):
    assert plan(_cfg(f"recipe={recipe}")) == stages


def test_no_stage2_stops_after_stage1():
    assert plan(_cfg("recipe=toy_scribbles", "stage2.enabled=false")) == ["stage1"]


def test_keys_depend_on_config_and_inputs():
    a = stage_key("pseudo1", {"crf": True}, ["k1"])
    assert a == stage_key("pseudo1", {"crf": True}, ["k1"])
    assert a != stage_key("pseudo1", {"crf": False}, ["k1"])
    assert a != stage_key("pseudo1", {"crf": True}, ["k2"])
    assert a != stage_key("pseudo2", {"crf": True}, ["k1"])


@pytest.mark.slow
def test_whole_pipeline_then_cached_then_partial_rerun(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    metrics = pipeline.run(_tiny("toy_boxes", run_dir), run_dir)
    dirs = stage_dirs(run_dir)
    assert list(dirs) == ["cam", "stage1", "pseudo1", "stage2"]
    assert all((d / "done.json").is_file() for d in dirs.values())
    assert set(metrics["stages"]) == set(dirs) and metrics["stage"] == "stage2"
    assert metrics["stages"]["stage2"]["mIoU"] == pytest.approx(metrics["mIoU"])
    labels = json.loads((dirs["pseudo1"] / "done.json").read_text())
    assert labels["images"] == 12 and labels["labelled_fraction"] == 1.0  # dense: every pixel labelled
    assert 0 <= labels["label_miou"] <= 100
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["mIoU"] == pytest.approx(metrics["mIoU"]) and saved["split"] == "val"

    # everything cached: nothing trains again
    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(pipeline, "train_spml", boom)
    monkeypatch.setattr(pipeline, "_cam_stage", boom)
    monkeypatch.setattr(pipeline, "_pseudo_stage", boom)
    monkeypatch.setattr(pipeline, "evaluate", boom)  # evaluations of unchanged weights are reused too
    # settings that do not change what a stage computes are not in its key
    again = pipeline.run(_tiny("toy_boxes", run_dir, "data.workers=1", "loss.chunk=4096"), run_dir)
    assert again["mIoU"] == pytest.approx(metrics["mIoU"])
    assert sorted(p.name for p in (run_dir / "predictions").iterdir())[:1] == [".key"]
    # another evaluation setting: evaluated again (no training), stale predictions cleared first
    monkeypatch.setattr(pipeline, "evaluate", evaluate)
    (run_dir / "predictions" / "stale.png").write_bytes(b"")
    pipeline.run(_tiny("toy_boxes", run_dir, "eval.max_images=2"), run_dir)
    assert len(list((run_dir / "predictions").glob("*_overlay.jpg"))) == 2
    assert not (run_dir / "predictions" / "stale.png").exists()

    # a pseudo-label setting changed: CAM and stage 1 reused, pseudo labels and stage 2 redone
    monkeypatch.undo()
    pipeline.run(_tiny("toy_boxes", run_dir, "pseudo.crf=false"), run_dir)
    new = stage_dirs(run_dir)
    assert new["cam"] == dirs["cam"] and new["stage1"] == dirs["stage1"]
    assert new["pseudo1"] != dirs["pseudo1"] and new["stage2"] != dirs["stage2"]


@pytest.mark.slow
def test_a_stage_redone_on_cached_stages_matches_a_run_from_scratch(tmp_path):
    """Each stage seeds itself from (run seed, stage): what runs before it in the process - a trained
    or a cached CAM stage / stage 1 - must not change its initialisation or batches."""
    import torch

    def run(run_dir, *more):
        pipeline.run(_tiny("toy_boxes", run_dir, *more), run_dir)
        d = stage_dirs(run_dir)
        return (torch.load(d["stage1"] / "checkpoints" / "last.pt", weights_only=False)["model"],
                torch.load(d["stage2"] / "head.pt", weights_only=True),
                json.loads((run_dir / "metrics.json").read_text())["mIoU"])

    s1, head, miou = run(tmp_path / "scratch")
    # stage 1 trained after a cached CAM stage (lambda_v is not in the CAM stage's key)
    run(tmp_path / "a", "loss.lambda_v=0.2")
    # stage 2 trained after a cached stage 1 (the pseudo labels changed)
    run(tmp_path / "b", "pseudo.crf=false")
    for d in ("a", "b"):
        s1_d, head_d, miou_d = run(tmp_path / d)
        assert all(torch.equal(s1[k], s1_d[k]) for k in s1), d
        assert all(torch.equal(head[k], head_d[k]) for k in head), d
        assert miou_d == miou, d


@pytest.mark.slow
def test_tags_run_two_rounds(tmp_path):
    run_dir = tmp_path / "tags"
    metrics = pipeline.run(_tiny("toy_tags", run_dir), run_dir)
    assert list(metrics["stages"]) == ["cam", "stage1", "pseudo1", "stage2", "pseudo2", "stage2b"]
    first = json.loads((stage_dirs(run_dir)["pseudo1"] / "done.json").read_text())
    second = json.loads((stage_dirs(run_dir)["pseudo2"] / "done.json").read_text())
    assert first["source"] == "cam" and second["source"] == "head"


@pytest.mark.slow
def test_external_cams_feed_the_cam_stage_and_the_first_pseudo_labels(tmp_path):
    import io

    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    from spml_train import data as data_mod

    run_dir = tmp_path / "ext"
    cams = tmp_path / "cams"
    cams.mkdir()
    cfg = _tiny("toy_tags", run_dir, f"data.cam.dir={cams}", "stage2.rounds=1")
    train_dir, _ = data_mod.prepare_toy(cfg, run_dir / "data")
    for f in (train_dir / "data").glob("train-*.parquet"):
        for row in pq.read_table(f).to_pylist():
            gt = np.array(Image.open(io.BytesIO(row["gt"]["bytes"])))
            # perfect CAMs: each foreground class's mask
            arr = np.stack([(gt == c).astype(np.float32) for c in range(1, 6)])
            np.save(cams / f"{row['image_id']}.npy", arr)
    metrics = pipeline.run(cfg, run_dir)
    dirs = stage_dirs(run_dir)
    assert not (dirs["cam"] / "classifier.pt").exists()              # nothing trained
    cam = json.loads((dirs["cam"] / "done.json").read_text())
    assert cam["external"] == str(cams) and cam["label_miou"] > 95
    first = json.loads((dirs["pseudo1"] / "done.json").read_text())
    assert first["source"] == "cam" and metrics["stage"] == "stage2"


@pytest.mark.slow
def test_more_stage1_iterations_redo_every_later_stage(tmp_path):
    run_dir = tmp_path / "more"
    pipeline.run(_tiny("toy_scribbles", run_dir), run_dir)
    before = stage_dirs(run_dir)
    pipeline.run(_tiny("toy_scribbles", run_dir, "optim.iterations=4"), run_dir)
    after = stage_dirs(run_dir)
    assert after["stage1"] == before["stage1"]                     # continued in place
    assert json.loads((after["stage1"] / "done.json").read_text())["iterations"] == 4
    assert after["pseudo1"] != before["pseudo1"] and after["stage2"] != before["stage2"]


@pytest.mark.slow
def test_weak_ignore_pixels_stay_ignored_in_pseudo_labels(tmp_path):
    import io

    import numpy as np
    import pyarrow.parquet as pq
    from PIL import Image

    from spml_train import data as data_mod
    from weaklabels.writers.png import encode_label_png

    run_dir = tmp_path / "ign"
    cfg = _tiny("toy_scribbles", run_dir)
    train_dir, _ = data_mod.prepare_toy(cfg, run_dir / "data")
    f = sorted((train_dir / "data").glob("train-*.parquet"))[0]
    table = pq.read_table(f)
    rows = table.to_pylist()
    weak = np.array(Image.open(io.BytesIO(rows[0]["weak_label"]["bytes"])))
    weak[:10, :10] = 255                                              # e.g. a crowd region
    rows[0]["weak_label"] = {"bytes": encode_label_png(weak, [0] * 768), "path": None}
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), f)
    pipeline.run(cfg, run_dir)
    shards = sorted((stage_dirs(run_dir)["pseudo1"] / "data" / "data").glob("train-*.parquet"))
    out = pq.read_table(shards[0]).to_pylist()
    lab = np.array(Image.open(io.BytesIO(out[0]["weak_label"]["bytes"])))
    assert (lab[:10, :10] == 255).all() and (lab[10:, 10:] != 255).all()


@pytest.mark.slow
def test_full_supervision_writes_predictions_whatever_the_rounds(tmp_path):
    run_dir = tmp_path / "full"
    metrics = pipeline.run(_tiny("toy_full", run_dir, "stage2.rounds=2"), run_dir)
    assert metrics["stage"] == "stage2" and any((run_dir / "predictions").glob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["toy_tags", "toy_full"])
def test_retrieval_memory_holds_labelled_segments(tmp_path, recipe):
    # tags: the memory comes from the CAM labels C trained on (the weak labels hold no segment)
    run_dir = tmp_path / recipe
    metrics = pipeline.run(_tiny(recipe, run_dir, "eval.retrieval=true", "stage2.enabled=false"), run_dir)
    assert 0 <= metrics["retrieval"]["mIoU"] <= 100 and metrics["retrieval"]["memory_segments"] > 0


@pytest.mark.slow
def test_predictions_follow_the_weights_after_stage1_continues(tmp_path, monkeypatch):
    run_dir = tmp_path / "pred"
    pipeline.run(_tiny("toy_scribbles", run_dir, "stage2.enabled=false"), run_dir)
    first = (run_dir / "predictions" / ".key").read_text()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_stage2", interrupted)
    with pytest.raises(KeyboardInterrupt):  # stage 1 continues to 4 iterations, stage 2 is cut
        pipeline.run(_tiny("toy_scribbles", run_dir, "optim.iterations=4"), run_dir)
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: calls.append(1) or evaluate(*a, **k))
    pipeline.run(_tiny("toy_scribbles", run_dir, "optim.iterations=4", "stage2.enabled=false"), run_dir)
    assert calls and (run_dir / "predictions" / ".key").read_text() != first


def _relabel(shard, row: int) -> None:
    """Rewrite one parquet shard in place with item ``row``'s weak label replaced by another item's,
    as a re-conversion with other labels into the same folder would."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(shard)
    col = t.schema.get_field_index("weak_label")
    labels = t.column(col).to_pylist()
    labels[row] = labels[(row + 1) % len(labels)]
    pq.write_table(t.set_column(col, t.schema.field(col), pa.array(labels, type=t.schema.field(col).type)), shard)


def test_reconverted_training_data_is_not_reused(tmp_path):
    """The stage keys cover the training data's content, not only its path: data re-converted into
    the same folder retrains from the CAM stage on, new validation data is evaluated again, and a
    copy of the same files (new modification times) is still recognised."""
    import shutil

    run_dir = tmp_path / "run"
    pipeline.run(_tiny("toy_boxes", run_dir, "stage2.enabled=false"), run_dir)
    before = stage_dirs(run_dir)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)                       # timestamps not preserved: same content
    pipeline.run(_tiny("toy_boxes", copy, "stage2.enabled=false"), copy)
    assert [d.name for d in stage_dirs(copy).values()] == [d.name for d in before.values()]
    _relabel(next((run_dir / "data").glob("shapes-*/train_boxes/data/train-*.parquet")), 0)
    pipeline.run(_tiny("toy_boxes", run_dir, "stage2.enabled=false"), run_dir)
    after = stage_dirs(run_dir)
    assert after["cam"] != before["cam"] and after["stage1"] != before["stage1"]
    m1 = json.loads((after["stage1"] / "metrics.json").read_text())["eval_key"]
    _relabel(next((run_dir / "data").glob("shapes-*/val/data/val-*.parquet")), 0)
    pipeline.run(_tiny("toy_boxes", run_dir, "stage2.enabled=false"), run_dir)
    assert stage_dirs(run_dir)["stage1"] == after["stage1"]   # training data unchanged: reused
    assert json.loads((after["stage1"] / "metrics.json").read_text())["eval_key"] != m1


def _folder(path, vocab, *, gt=True, image=True, split="train"):
    import numpy as np

    from parquet_helpers import write_dataset

    lab = np.zeros((16, 16), np.uint8)
    lab[4:9, 4:9] = 1
    write_dataset(path, split, vocab, [{"image": np.full((16, 16, 3), 90, np.uint8), "weak": lab,
                                        "gt": lab if gt else None, "image_id": f"im{k}"} for k in range(3)])
    if not image:  # as `weaklabels convert` writes masks-only items
        import pyarrow as pa
        import pyarrow.parquet as pq

        f = next((path / "data").glob("*.parquet"))
        t = pq.read_table(f)
        t = t.set_column(t.schema.get_field_index("image"), "image", pa.nulls(len(t), t.schema.field("image").type))
        pq.write_table(t, f)
    return path


@pytest.mark.parametrize("problem, message", [
    ("vocabulary", "differ (class 2: 'c2' vs 'other')"),
    ("val_image", "3 of 3 items of split 'val' have no image; evaluation needs the images"),
    ("val_gt", "3 of 3 items of split 'val' have no gt; evaluation needs the ground truth"),
    ("train_image", "3 of 3 items of split 'train' have no image; training needs the images"),
    ("train_gt", "have no gt; full supervision trains on it"),
])
def test_data_problems_are_refused_before_training(tmp_path, problem, message):
    """A wrong validation folder or masks-only training data used to surface after stage 1 (a
    traceback) or as a meaningless mIoU; now before any work, as a SchemaError (exit 4)."""
    from parquet_helpers import vocab_of
    from spml_train.data import ConvertedDataset
    from weaklabels.errors import SchemaError
    from weaklabels.types import Vocabulary

    vocab = vocab_of(3)
    train = _folder(tmp_path / "train", vocab, image=problem != "train_image", gt=problem != "train_gt")
    val_vocab = Vocabulary(("background", "c1", "other")) if problem == "vocabulary" else vocab
    val = _folder(tmp_path / "val", val_vocab, gt=problem != "val_gt", image=problem != "val_image", split="val")
    full = problem == "train_gt"
    cfg = _cfg("recipe=toy_scribbles", f"data.full_supervision={full}")
    train_ds = ConvertedDataset(train, "train", kind="scribbles", train=True, full_supervision=full)
    val_ds = ConvertedDataset(val, "val", kind="scribbles", train=False)
    with pytest.raises(SchemaError, match=re.escape(message)):
        pipeline._check_data(cfg, train_ds, val_ds)
    if problem == "train_gt":   # the same data passes without full supervision
        pipeline._check_data(_cfg("recipe=toy_scribbles"), train_ds, val_ds)


def test_class_tables_differing_only_in_source_ids_are_the_same(tmp_path):
    # the same VOC classes via the VOC reader (source ids) and via an HF copy (none)
    from parquet_helpers import vocab_of
    from spml_train.data import ConvertedDataset
    from weaklabels.types import Vocabulary

    names = vocab_of(3).names
    train = _folder(tmp_path / "train", Vocabulary(names, source_ids=(0, 1, 2)))
    val = _folder(tmp_path / "val", Vocabulary(names), split="val")
    pipeline._check_data(_cfg("recipe=toy_scribbles"), ConvertedDataset(train, "train", kind="scribbles", train=True),
                         ConvertedDataset(val, "val", kind="scribbles", train=False))
