"""The conversion pipeline: output layout, determinism across --num-proc,
error policy, refusal of non-empty outputs, and resume after an interruption."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from weaklabels.convert import MARKER, PARTIAL, ConvertOptions, convert
from weaklabels.errors import CorruptFileError, OutputExistsError, SchemaError
from weaklabels.sources import read_voc
from weaklabels.sources.bundled import bundled_voc


def _rows(out: Path, split: str = "train") -> list[dict]:
    rows = []
    for f in sorted((out / "data").glob(f"{split}-*.parquet")):
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def _png(b: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(b))
    assert im.mode == "P"
    return np.array(im)


@pytest.fixture()
def shapes_copy(shapes_dataset, tmp_path) -> Path:
    dst = tmp_path / "shapes"
    shutil.copytree(shapes_dataset, dst)
    return dst


def test_hf_output_loads_offline_with_datasets(tmp_path):
    from datasets import load_dataset

    src = {"train": read_voc(bundled_voc(), "train"), "val": read_voc(bundled_voc(), "val")}
    out = tmp_path / "out"
    res = convert(src, out, ConvertOptions(kind="boxes"))
    assert not (out / PARTIAL).exists()
    assert json.loads((out / MARKER).read_text())["status"] == "complete"
    ds = load_dataset("parquet", data_files={"train": str(out / "data/train-*.parquet"),
                                             "val": str(out / "data/val-*.parquet")})
    assert len(ds["train"]) == len(src["train"]) and len(ds["val"]) == len(src["val"])
    assert all(g is None for g in ds["train"]["gt"]) and all(g is not None for g in ds["val"]["gt"])
    assert res.summary.num_images == len(src["train"]) + len(src["val"])
    # vocabulary.json and the card carry the vocabulary
    voc = json.loads((out / "vocabulary.json").read_text())
    assert voc["unlabelled"] == 254 and voc["ignore"] == 255 and voc["names"][15] == "person"
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "task_categories:" in card and "| 15 | person |" in card


def test_rows_match_the_samples(tmp_path):
    src = read_voc(bundled_voc(), "val")
    out = tmp_path / "out"
    convert({"val": src}, out, ConvertOptions(kind="tags"))
    rows = {r["image_id"]: r for r in _rows(out, "val")}
    assert set(rows) == set(src.ids)
    for i in range(len(src)):
        s = src[i]
        r = rows[s.image_id]
        assert (r["width"], r["height"]) == (s.width, s.height)
        present = sorted(set(np.unique(s.semantic.array).tolist()) - {0, 255})  # written from the mask itself
        assert r["tags"] == present and present
        np.testing.assert_array_equal(_png(r["gt"]["bytes"]), s.semantic.array)
        weak = _png(r["weak_label"]["bytes"])
        assert (weak == 254).all()  # tags label no pixel
        assert r["image"]["bytes"] == Path(s.image.path).read_bytes()  # embedded, not a path
        assert r["image"]["path"] is None


def test_boxes_weak_label_background_outside_boxes(tmp_path):
    src = read_voc(bundled_voc(), "train")
    out = tmp_path / "out"
    convert({"train": src}, out, ConvertOptions(kind="boxes"))
    for r in _rows(out):
        weak = _png(r["weak_label"]["bytes"])
        inside = np.zeros_like(weak, bool)
        ignored = np.zeros_like(weak, bool)
        for b in r["boxes"]:
            (ignored if b["crowd"] else inside)[int(b["y0"]):int(b["y1"]), int(b["x0"]):int(b["x1"])] = True
        assert (weak[inside] == 254).all()
        assert (weak[ignored & ~inside] == 255).all()
        assert (weak[~inside & ~ignored] == 0).all()


def test_output_does_not_depend_on_num_proc(tmp_path, voc_masks):
    src = read_voc(voc_masks, "sample")
    src.ids = src.ids[:120]
    opts = ConvertOptions(kind="boxes", shard_size=16)
    a, b = tmp_path / "a", tmp_path / "b"
    convert({"sample": src}, a, opts, num_proc=1)
    convert({"sample": src}, b, opts, num_proc=2)
    ra, rb = _rows(a, "sample"), _rows(b, "sample")
    assert len(ra) == 120 and ra == rb
    assert (a / "stats.csv").read_text() == (b / "stats.csv").read_text()


def test_non_empty_out_is_refused(tmp_path):
    src = {"train": read_voc(bundled_voc(), "train")}
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="not empty"):
        convert(src, out, ConvertOptions(kind="tags"))
    # --overwrite never deletes a folder weaklabels did not write
    with pytest.raises(OutputExistsError, match="not written by weaklabels"):
        convert(src, out, ConvertOptions(kind="tags"), overwrite=True)
    assert (out / "mine.txt").read_text() == "precious"
    out2 = tmp_path / "out2"
    convert(src, out2, ConvertOptions(kind="tags"))
    with pytest.raises(OutputExistsError):
        convert(src, out2, ConvertOptions(kind="tags"))
    convert(src, out2, ConvertOptions(kind="boxes"), overwrite=True)
    assert json.loads((out2 / MARKER).read_text())["options"]["kind"] == "boxes"


def _corrupt(root: Path, image_id: str) -> None:
    (root / "VOCdevkit/VOC2012/SegmentationClass" / f"{image_id}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def test_on_error_skip_reports_and_converts_the_rest(shapes_copy, tmp_path):
    src = read_voc(shapes_copy, "train")
    bad = src.ids[1]
    _corrupt(shapes_copy, bad)
    out = tmp_path / "out"
    with pytest.raises(CorruptFileError, match=bad):
        convert({"train": src}, tmp_path / "failed", ConvertOptions(kind="tags"))
    res = convert({"train": src}, out, ConvertOptions(kind="tags"), on_error="skip")
    errors = json.loads((out / "errors.json").read_text())
    assert [e["image_id"] for e in errors] == [bad]
    assert errors[0]["error"] == "CorruptFileError" and bad in errors[0]["message"]
    assert res.summary.skipped == 1
    assert {r["image_id"] for r in _rows(out)} == set(src.ids) - {bad}


class _Interrupting:
    """Wraps a source and raises KeyboardInterrupt at one index, counting decodes."""

    def __init__(self, inner, at: int | None):
        self.inner, self.at, self.calls = inner, at, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i == self.at:
            raise KeyboardInterrupt
        self.calls.append(i)
        return self.inner[i]


def test_interrupted_run_looks_unfinished_and_resumes(shapes_dataset, tmp_path):
    base = read_voc(shapes_dataset, "train")
    n = len(base)
    opts = ConvertOptions(kind="boxes", shard_size=3)
    out = tmp_path / "out"
    src = _Interrupting(base, at=7)
    with pytest.raises(KeyboardInterrupt):
        convert({"train": src}, out, opts)
    # nothing that looks like a finished dataset
    assert not (out / "README.md").exists() and not (out / "data").exists()
    assert not (out / "vocabulary.json").exists()
    assert json.loads((out / MARKER).read_text())["status"] == "running"
    # the same command resumes at the first unfinished shard (items 6..)
    src2 = _Interrupting(base, at=None)
    res = convert({"train": src2}, out, opts)
    assert min(src2.calls) == 6 and res.resumed_shards == 2
    fresh = tmp_path / "fresh"
    convert({"train": base}, fresh, opts)
    assert _rows(out) == _rows(fresh) and len(_rows(out)) == n
    # a different configuration does not silently mix with the partial run
    src3 = _Interrupting(base, at=4)
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        convert({"train": src3}, other, opts)
    with pytest.raises(OutputExistsError, match="interrupted conversion with other settings"):
        convert({"train": base}, other, ConvertOptions(kind="tags", shard_size=3))


def test_voc_format_writes_pngs_and_spml_list(tmp_path):
    src = read_voc(bundled_voc(), "train")
    out = tmp_path / "out"
    convert({"train": src}, out, ConvertOptions(kind="boxes", format="voc"))
    lines = (out / "train.txt").read_text().splitlines()
    assert len(lines) == len(src)
    for ln in lines:
        image, label = ln.split()
        assert (out / image).is_file() and (out / label).is_file()
        assert Image.open(out / label).mode == "P"
    assert not (out / PARTIAL).exists()


def test_bad_options_are_refused():
    with pytest.raises(SchemaError, match="kind"):
        ConvertOptions(kind="polygons")
    with pytest.raises(SchemaError, match="format"):
        ConvertOptions(kind="tags", format="csv")
    with pytest.raises(SchemaError, match="on_error"):
        convert({"train": read_voc(bundled_voc(), "train")}, "/nonexistent/x", ConvertOptions(kind="tags"),
                on_error="ignore")


def test_empty_split_is_refused(shapes_copy, tmp_path):
    split_file = shapes_copy / "VOCdevkit/VOC2012/ImageSets/Segmentation/empty.txt"
    split_file.write_text("")
    with pytest.raises(SchemaError, match="split 'empty' has no images"):
        convert({"empty": read_voc(shapes_copy, "empty")}, tmp_path / "out", ConvertOptions(kind="tags"))


def test_shards_emptied_by_skipped_items_are_dropped(shapes_copy, tmp_path):
    from datasets import load_dataset

    src = read_voc(shapes_copy, "train")
    for iid in src.ids[:2]:  # the whole first shard fails
        _corrupt(shapes_copy, iid)
    out = tmp_path / "out"
    convert({"train": src}, out, ConvertOptions(kind="tags", shard_size=2), on_error="skip")
    files = sorted(p.name for p in (out / "data").glob("*.parquet"))
    n = -(-(len(src) - 2) // 2)
    assert files == [f"train-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
    ds = load_dataset("parquet", data_files={"train": str(out / "data/train-*.parquet")})["train"]
    assert sorted(ds["image_id"]) == sorted(src.ids[2:])


def test_split_whose_items_all_fail_gets_no_data_files(shapes_copy, tmp_path):
    src = read_voc(shapes_copy, "train")
    for iid in src.ids:
        _corrupt(shapes_copy, iid)
    out = tmp_path / "out"
    convert({"train": src}, out, ConvertOptions(kind="tags"), on_error="skip")
    assert not list((out / "data").glob("*.parquet"))
    assert "train" not in json.loads((out / MARKER).read_text())["data_files"]
    assert len(json.loads((out / "errors.json").read_text())) == len(src)


class _Renamed:
    """A source whose image ids are replaced (as an HF dataset's id column could hold anything)."""

    def __init__(self, inner, ids: list[str]):
        self.inner, self.ids = inner, ids

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.ids)

    def image_id(self, i):
        return self.ids[i]

    def __getitem__(self, i):
        from dataclasses import replace

        return replace(self.inner[i], image_id=self.ids[i])


@pytest.mark.parametrize("bad", ["../../escape", "sub/dir", "a b", "..", "line\nbreak"])
def test_voc_format_refuses_ids_that_are_not_file_names(shapes_copy, tmp_path, bad):
    inner = read_voc(shapes_copy, "train")
    src = _Renamed(inner, [bad] + inner.ids[1:])
    out = tmp_path / "deep" / "out"
    res = convert({"train": src}, out, ConvertOptions(kind="points", format="voc"), on_error="skip")
    assert [e["image_id"] for e in res.errors] == [bad] and res.errors[0]["error"] == "UnsafePathError"
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(str(p).startswith(("deep/out/", "shapes/")) for p in written)
    assert len((out / "train.txt").read_text().splitlines()) == len(inner) - 1


def test_voc_format_refuses_duplicate_ids(shapes_copy, tmp_path):
    inner = read_voc(shapes_copy, "train")
    src = _Renamed(inner, [inner.ids[0]] + inner.ids[:-1])
    with pytest.raises(SchemaError, match="occur more than once"):
        convert({"train": src}, tmp_path / "out", ConvertOptions(kind="tags", format="voc"))


def test_a_second_conversion_into_a_busy_folder_is_refused(tmp_path):
    from weaklabels.convert import LOCK, _lock, _unlock

    src = {"train": read_voc(bundled_voc(), "train")}
    out = tmp_path / "out"
    out.mkdir()
    held = _lock(out)  # as another process writing there would
    try:
        with pytest.raises(OutputExistsError, match="another weaklabels convert is writing"):
            convert(src, out, ConvertOptions(kind="tags"))
    finally:
        _unlock(out, held)
    convert(src, out, ConvertOptions(kind="tags"))
    assert not (out / LOCK).exists()
    convert(src, out, ConvertOptions(kind="boxes"), overwrite=True)  # the lock survives its own overwrite
    assert not (out / LOCK).exists() and json.loads((out / MARKER).read_text())["options"]["kind"] == "boxes"


def test_lock_refuses_a_run_that_locked_a_finished_runs_deleted_file(tmp_path, monkeypatch):
    from weaklabels import convert as convert_mod

    out = tmp_path / "out"
    out.mkdir()
    a = convert_mod._lock(out)
    stale = open(out / convert_mod.LOCK, "a")     # B opened the file while A held it ...
    convert_mod._unlock(out, a)                   # ... A finishes and deletes it ...
    c = convert_mod._lock(out)                    # ... C creates a new one and holds it
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: stale if str(a[0]).endswith(convert_mod.LOCK)
                        else real_open(*a, **k))
    with pytest.raises(OutputExistsError, match="another weaklabels convert"):
        convert_mod._lock(out)                    # B locks the deleted file: refused
    monkeypatch.undo()
    convert_mod._unlock(out, c)


def test_a_filesystem_without_locks_converts_without_one(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_flock(*a, **k):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with caplog.at_level("WARNING"):
        convert({"train": read_voc(bundled_voc(), "train")}, tmp_path / "out", ConvertOptions(kind="tags"))
    assert "without a lock" in caplog.text
    assert json.loads((tmp_path / "out" / MARKER).read_text())["status"] == "complete"


# --------------------------------------------------------------------------- --out apart from the inputs


@pytest.fixture()
def offline_datasets(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    datasets.disable_progress_bars()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("root_in, out_in, how", [
    ("converted", "converted", "is"),                  # the report's case: the source is deleted
    ("converted/data", "converted", "holds"),
])
def test_out_overlapping_the_input_is_refused_before_anything_is_deleted(tmp_path, offline_datasets,
                                                                          root_in, out_in, how):
    from weaklabels.sources import read_hf

    convert({"val": read_voc(bundled_voc(), "val")}, tmp_path / "converted", ConvertOptions(kind="points"))
    before = _tree(tmp_path / "converted")
    root, out = tmp_path / root_in, tmp_path / out_in
    src = {"val": read_hf(root, "val", mask_column="gt")}
    with pytest.raises(OutputExistsError) as err:
        convert(src, out, ConvertOptions(kind="boxes"), overwrite=True)
    assert f"output folder {out} {how} the input of split 'val' ({root})" in str(err.value)
    assert _tree(tmp_path / "converted") == before  # no file deleted, no lock or marker left
    assert not (tmp_path / "converted" / "again").exists()


def test_out_overlapping_annotations_or_regions_is_refused(tmp_path, voc_points):
    from weaklabels.sources.human import Annotated, human_annotations

    clicks = tmp_path / "work" / "clicks.json"
    clicks.parent.mkdir()
    clicks.write_text((voc_points / "whats_the_point_clicks.json").read_text())
    src = {"train": Annotated(read_voc(bundled_voc(), "train"), human_annotations("points", clicks))}
    with pytest.raises(OutputExistsError, match=rf"output folder {tmp_path / 'work'} holds the input of split 'train' "
                                                rf"\({clicks}\)"):
        convert(src, tmp_path / "work", ConvertOptions(kind="points", given=True), overwrite=True)
    regions = tmp_path / "work2" / "regions"
    regions.mkdir(parents=True)
    with pytest.raises(OutputExistsError, match="holds the regions folder"):
        convert({"train": read_voc(bundled_voc(), "train")}, regions.parent,
                ConvertOptions(kind="tags", regions=str(regions)), overwrite=True)
    assert clicks.is_file() and regions.is_dir()


def test_out_inside_an_input_folder_is_fine(shapes_copy):
    # e.g. VOC-style output kept next to the data it came from: nothing of the input is touched
    out = shapes_copy / "VOCdevkit" / "weak-tags"
    res = convert({"train": read_voc(shapes_copy, "train")}, out, ConvertOptions(kind="tags"))
    assert res.summary.num_images > 0 and (out / "data").is_dir()


# --------------------------------------------------------------------------- a run stopped by an error


def test_a_failed_run_is_marked_failed_resumable_and_replaceable(shapes_copy, tmp_path):
    base = read_voc(shapes_copy, "train")
    opts = ConvertOptions(kind="boxes", shard_size=3)
    bad = shapes_copy / "VOCdevkit/VOC2012/SegmentationClass" / f"{base.ids[7]}.png"
    good = bad.read_bytes()
    _corrupt(shapes_copy, base.ids[7])
    out = tmp_path / "out"
    with pytest.raises(CorruptFileError):
        convert({"train": base}, out, opts)
    state = json.loads((out / MARKER).read_text())
    assert state["status"] == "failed" and base.ids[7] in state["error"]
    # the same settings, once the input is fixed, resume after the shards already written
    bad.write_bytes(good)
    res = convert({"train": base}, out, opts)
    assert res.resumed_shards == 2
    fresh = tmp_path / "fresh"
    convert({"train": base}, fresh, opts)
    assert _rows(out) == _rows(fresh)
    # other settings replace a failed run without --overwrite (an interrupted one is kept: see above)
    _corrupt(shapes_copy, base.ids[7])
    other = tmp_path / "other"
    with pytest.raises(CorruptFileError):
        convert({"train": base}, other, opts)
    res = convert({"train": base}, other, ConvertOptions(kind="tags", shard_size=3), on_error="skip")
    assert [e["image_id"] for e in res.errors] == [base.ids[7]]
    assert json.loads((other / MARKER).read_text())["status"] == "complete"


def test_output_exists_messages_name_the_api_argument_not_only_the_cli_flag(tmp_path):
    """A Python caller has no --out / --overwrite: each message names what it controls too."""
    src = {"train": read_voc(bundled_voc(), "train")}
    out = tmp_path / "out"
    convert(src, out, ConvertOptions(kind="tags"))
    with pytest.raises(OutputExistsError) as err:
        convert(src, out, ConvertOptions(kind="tags"))
    assert str(err.value) == f"output folder {out} is not empty; pass overwrite=True / --overwrite to replace it"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="even with overwrite=True / --overwrite"):
        convert(src, tmp_path / "mine", ConvertOptions(kind="tags"), overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="^output "):
        convert(src, tmp_path / "file", ConvertOptions(kind="tags"))
    with pytest.raises(OutputExistsError, match="choose an output folder apart from it"):
        convert(src, bundled_voc(), ConvertOptions(kind="tags"))
