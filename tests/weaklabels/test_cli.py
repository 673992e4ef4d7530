"""The weaklabels command: documented exit codes, outputs, show and stats."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from weaklabels.cli import EXIT_DATA, EXIT_OK, EXIT_OUTPUT, EXIT_SKIPPED, main


def test_convert_bundled_default_runs_without_download(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["convert", "voc", "--to", "tags", "--out", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "person" in text and "wrote 7 images" in text
    assert (out / "README.md").is_file()


def test_convert_coco_bundled(tmp_path):
    assert main(["convert", "coco", "--to", "boxes", "--split", "val", "--out", str(tmp_path / "c"),
                 "--quiet"]) == EXIT_OK
    voc = json.loads((tmp_path / "c" / "vocabulary.json").read_text())
    assert voc["source_ids"][0] is None and voc["source_ids"][1] == 3  # non-contiguous ids recorded


def test_exit_codes(tmp_path, shapes_dataset, capsys):
    out = tmp_path / "o"
    assert main(["convert", "voc", "--to", "tags", "--out", str(out), "--quiet"]) == EXIT_OK
    assert main(["convert", "voc", "--to", "tags", "--out", str(out), "--quiet"]) == EXIT_OUTPUT
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "voc", "--to", "tags", "--out", str(out), "--quiet", "--overwrite"]) == EXIT_OK
    # bad data: 4 with fail, 3 with skip
    root = tmp_path / "shapes"
    shutil.copytree(shapes_dataset, root)
    victim = sorted((root / "VOCdevkit/VOC2012/SegmentationClass").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    assert main(["convert", "voc", "--root", str(root), "--to", "tags", "--out", str(tmp_path / "f"),
                 "--quiet"]) == EXIT_DATA
    assert victim.stem in capsys.readouterr().err
    assert main(["convert", "voc", "--root", str(root), "--to", "tags", "--split", "trainval",
                 "--out", str(tmp_path / "s"), "--quiet", "--on-error", "skip"]) == EXIT_SKIPPED
    err = capsys.readouterr().err
    assert "skipped 1 of 12" in err
    assert json.loads((tmp_path / "s" / "errors.json").read_text())[0]["image_id"] == victim.stem
    # unknown split names the available ones
    assert main(["convert", "voc", "--to", "tags", "--split", "nope", "--out", str(tmp_path / "n")]) == EXIT_DATA
    assert "available splits" in capsys.readouterr().err


def test_usage_error_exit_code_is_2():
    r = subprocess.run([sys.executable, "-m", "weaklabels.cli", "convert", "voc", "--to", "polygons"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_no_progress_bar_when_not_a_terminal(tmp_path):
    r = subprocess.run([sys.executable, "-m", "weaklabels.cli", "convert", "voc", "--to", "tags",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "img/s" not in r.stderr and "it/s" not in r.stderr


def test_show_and_stats(tmp_path, capsys):
    out = tmp_path / "o"
    main(["convert", "voc", "--to", "boxes", "--out", str(out), "--quiet"])
    png = tmp_path / "overlay.png"
    assert main(["show", str(out), "--id", "2011_003066", "--out", str(png)]) == EXIT_OK
    im = Image.open(png)
    assert im.size == (500, 375) and im.mode == "RGB"
    csv_path = tmp_path / "s.csv"
    assert main(["stats", str(out), "--csv", str(csv_path)]) == EXIT_OK
    assert "person" in capsys.readouterr().out
    rows = list(csv.DictReader(csv_path.open()))
    person = next(r for r in rows if r["class"] == "person")
    assert int(person["annotations"]) == 7 and int(person["images"]) == 1
    assert main(["show", str(tmp_path / "missing")]) == EXIT_DATA


def test_sample_shapes(tmp_path):
    out = tmp_path / "s"
    assert main(["sample", "shapes", "--out", str(out), "--num-images", "5", "--seed", "1", "--quiet"]) == EXIT_OK
    root = out / "VOCdevkit/VOC2012"
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 5
    assert (out / "annotations/instances_train.json").is_file()
    assert main(["sample", "shapes", "--out", str(out), "--num-images", "5", "--quiet"]) == EXIT_OUTPUT


@pytest.mark.parametrize("fmt", ["hf", "voc"])
def test_formats_from_cli(tmp_path, fmt):
    out = tmp_path / fmt
    assert main(["convert", "voc", "--to", "boxes", "--format", fmt, "--out", str(out), "--quiet",
                 "--num-proc", "2", "--shard-size", "2"]) == EXIT_OK
    one = tmp_path / f"{fmt}_one"
    assert main(["convert", "voc", "--to", "boxes", "--format", fmt, "--out", str(one), "--quiet"]) == EXIT_OK
    if fmt == "hf":  # the bundled train split's 7 images in shards of 2; same rows as one process
        import pyarrow.parquet as pq

        shards = sorted((out / "data").glob("train-*.parquet"))
        assert [pq.ParquetFile(f).metadata.num_rows for f in shards] == [2, 2, 2, 1]
        rows = [r for f in shards for r in pq.read_table(f).to_pylist()]
        assert rows == pq.read_table(one / "data" / "train-00000-of-00001.parquet").to_pylist()
    else:
        assert (out / "train.txt").read_text() == (one / "train.txt").read_text()
        assert len((out / "train.txt").read_text().splitlines()) == 7
        for f in (one / "WeakLabels").iterdir():
            assert (out / "WeakLabels" / f.name).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("args", [
    ["--k", "0"], ["--width", "0"], ["--length-ratio", "2"], ["--shard-size", "0"], ["--regions", "bogus"],
    ["--seed", "-1"], ["--num-proc", "0"], ["--min-area", "-5"], ["--point-radius", "-1"],
])
def test_out_of_range_options_are_usage_errors(args, tmp_path):
    r = subprocess.run([sys.executable, "-m", "weaklabels.cli", "convert", "voc", "--to", "points",
                        "--out", str(tmp_path / "o"), *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert not (tmp_path / "o").exists()


def test_coco_split_defaults_to_the_annotation_file_name(tmp_path):
    from weaklabels.sources.bundled import bundled_coco

    ann, images = bundled_coco("val")
    named = tmp_path / "instances_val2017.json"
    named.write_bytes(ann.read_bytes())
    out = tmp_path / "c"
    assert main(["convert", "coco", "--annotations", str(named), "--root", str(images), "--to", "tags",
                 "--out", str(out), "--quiet"]) == EXIT_OK
    assert list((out / "data").glob("val2017-*.parquet"))


def test_broken_hf_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "g.parquet"
    bad.write_text("garbage")
    for root in (str(tmp_path / "missing"), str(bad)):
        assert main(["convert", "hf", "--root", root, "--to", "tags", "--out", str(tmp_path / "o")]) == EXIT_DATA
        assert root in capsys.readouterr().err


def test_coco_annotations_without_root_are_refused_unless_masks_only(tmp_path, capsys):
    from weaklabels.sources.bundled import bundled_coco

    ann, images = bundled_coco("val")
    out = tmp_path / "c"
    assert main(["convert", "coco", "--annotations", str(ann), "--to", "boxes", "--out", str(out)]) == EXIT_DATA
    err = capsys.readouterr().err
    assert "without --root" in err and "--masks-only" in err and not out.exists()
    assert main(["convert", "coco", "--annotations", str(ann), "--to", "boxes", "--masks-only",
                 "--out", str(out)]) == EXIT_OK
    assert "masks-only items" in capsys.readouterr().out
    import pyarrow.parquet as pq

    rows = [r for f in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert rows and all(r["image"] is None for r in rows)
    assert main(["convert", "coco", "--annotations", str(ann), "--root", str(images), "--masks-only",
                 "--to", "boxes", "--out", str(tmp_path / "both")]) == EXIT_DATA
    assert main(["convert", "voc", "--masks-only", "--to", "boxes", "--out", str(tmp_path / "v")]) == EXIT_DATA
    assert "for coco and densepose" in capsys.readouterr().err


def test_skipped_summary_keeps_each_reason_whole_and_groups_alike_items(tmp_path, capsys):
    from weaklabels.sources import read_voc
    from weaklabels.sources.bundled import bundled_voc

    ids = read_voc(bundled_voc(), "train").ids
    xml = tmp_path / "scr"
    xml.mkdir()
    (xml / f"{ids[0]}.xml").write_text("<annotation><polygon><tag>giraffe</tag><point><X>3</X><Y>4</Y></point>"
                                       "</polygon></annotation>")  # the others have no file
    assert main(["convert", "voc", "--to", "scribbles", "--from-annotations", str(xml), "--on-error", "skip",
                 "--out", str(tmp_path / "o"), "--quiet"]) == EXIT_SKIPPED
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"skipped 7 of 7 (details: {tmp_path / 'o' / 'errors.json'})")
    assert lines[1].startswith(f"  6 x missing annotation file {xml}/ID.xml (images {ids[1]}, {ids[2]}, {ids[3]}, ...)")
    assert lines[2].startswith(f"  1 x {xml}/{ids[0]}.xml polygon 0: tag 'giraffe' is not a class; valid names: ")
    assert lines[2].endswith(f" ... (image {ids[0]})") and len(lines) == 3


def test_skip_reasons_cut_at_a_word_boundary():
    from weaklabels.cli import _skip_reasons

    names = ", ".join(f"class{k}" for k in range(60))
    errors = [{"image_id": "a", "message": f"image 'a': tag 'giraffe' is not a class; valid names: {names}"}]
    (line,) = _skip_reasons(errors, width=80)
    reason = line.split(" x ", 1)[1].rsplit(" (image a)", 1)[0]
    assert reason.startswith("tag 'giraffe' is not a class") and reason.endswith(" ...") and len(reason) <= 80
    assert reason[:-4].rstrip(",").rsplit(" ", 1)[1] in names.replace(",", "").split()  # a whole word
    many = [{"image_id": f"i{k}", "message": f"image 'i{k}': problem {k}"} for k in range(5)]
    assert _skip_reasons(many)[-1] == "and 2 other kind(s) of failure"


def test_show_says_which_split_holds_an_id_and_how_many_items_a_split_has(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["convert", "voc", "--to", "tags", "--split", "train,val", "--out", str(out), "--quiet"]) == EXIT_OK
    assert main(["show", str(out), "--id", "shapes_000007"]) == EXIT_DATA
    assert "no item 'shapes_000007' in split 'train'; it is in split 'val' (--split val)" in capsys.readouterr().err
    assert main(["show", str(out), "--id", "nowhere"]) == EXIT_DATA
    assert "no split has it (train, val)" in capsys.readouterr().err
    assert main(["show", str(out), "--index", "99"]) == EXIT_DATA
    assert "it has 7 items (0..6)" in capsys.readouterr().err


def test_hf_class_names_background_alias_is_background(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    out = tmp_path / "o"
    assert main(["convert", "voc", "--to", "tags", "--split", "val", "--out", str(out), "--quiet"]) == EXIT_OK
    names = json.loads((out / "vocabulary.json").read_text())["names"]
    again = tmp_path / "again"
    assert main(["convert", "hf", "--root", str(out / "data"), "--split", "val", "--mask-column", "gt",
                 "--class-names", ",".join(["_background_"] + names[1:]), "--to", "boxes",
                 "--out", str(again), "--quiet"]) == EXIT_OK
    voc = json.loads((again / "vocabulary.json").read_text())
    assert voc["background"] == 0 and voc["names"][0] == "background"


def test_failed_conversion_does_not_block_a_rerun_with_other_options(tmp_path, voc_masks, capsys):
    out = tmp_path / "o"
    args = ["convert", "voc", "--root", str(voc_masks), "--split", "sample", "--to", "tags", "--out", str(out),
            "--quiet"]
    assert main(args + ["--regions", "felzenszwalb"]) == EXIT_DATA  # masks only: nothing to segment
    assert "needs images" in capsys.readouterr().err
    assert main(args) == EXIT_OK
    assert json.loads((out / ".weaklabels.json").read_text())["status"] == "complete"


def _rows(folder):
    import pyarrow.parquet as pq

    return [r for f in sorted((folder / "data").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_detection_only_coco_converts_to_boxes(tmp_path, capsys):
    """A COCO file with bbox and no segmentation: --to boxes works (with or without
    --from-annotations on it), the boxes are its bbox fields, no gt; --masks none does the same for a
    file with masks."""
    from weaklabels.sources.bundled import bundled_coco

    ann, images = bundled_coco("val")
    doc = json.loads(ann.read_text())
    for a in doc["annotations"]:
        del a["segmentation"]
    det = tmp_path / "det_only.json"
    det.write_text(json.dumps(doc))
    common = ["convert", "coco", "--root", str(images), "--split", "val", "--quiet"]
    assert main(common + ["--annotations", str(ann), "--to", "boxes", "--from-annotations", str(ann),
                          "--out", str(tmp_path / "human")]) == EXIT_OK
    want = [(r["image_id"], r["boxes"], r["tags"]) for r in _rows(tmp_path / "human")]
    assert any(b for _, b, _ in want)
    for extra, out in ((["--from-annotations", str(det)], "a"), ([], "b")):
        assert main(common + ["--annotations", str(det), "--to", "boxes", "--out", str(tmp_path / out),
                              *extra]) == EXIT_OK, capsys.readouterr().err
        rows = _rows(tmp_path / out)
        assert [(r["image_id"], r["boxes"], r["tags"]) for r in rows] == want
        assert all(r["gt"] is None and r["image"] is not None for r in rows)
    assert main(common + ["--annotations", str(ann), "--masks", "none", "--to", "boxes",
                          "--out", str(tmp_path / "c")]) == EXIT_OK
    assert [(r["image_id"], r["boxes"], r["tags"]) for r in _rows(tmp_path / "c")] == want
    capsys.readouterr()
    assert main(common + ["--annotations", str(det), "--to", "points", "--out", str(tmp_path / "p")]) == EXIT_DATA
    assert "points need a class mask" in capsys.readouterr().err
    assert main(["convert", "coco", "--annotations", str(det), "--masks-only", "--to", "boxes",
                 "--out", str(tmp_path / "m")]) == EXIT_DATA
    assert "nothing but boxes" in capsys.readouterr().err


@pytest.mark.parametrize("kind,args,named", [
    ("boxes", ["--placement", "random", "--width", "9"], ["--placement (for --to points)",
                                                         "--width (for --to scribbles)"]),
    ("tags", ["--width", "5"], ["--width (for --to scribbles)"]),
    ("tags", ["--min-area", "10"], ["--min-area (for --to boxes / points / scribbles)"]),  # even at its default
    ("points", ["--connectivity", "4", "--length-ratio", "0"], ["--connectivity", "--length-ratio"]),
    ("scribbles", ["--no-background", "--k", "2"], ["--k (for --to points)"]),
    ("tags", ["--from-annotations", "x.json"], ["--from-annotations (for --to points / scribbles / boxes)"]),
])
def test_options_the_kind_ignores_are_usage_errors(tmp_path, capsys, kind, args, named):
    with pytest.raises(SystemExit) as err:
        main(["convert", "voc", "--to", kind, "--out", str(tmp_path / "o"), *args])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert f"--to {kind} does not use" in msg and all(n in msg for n in named), msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,named", [
    (["--to", "points", "--from-annotations", "clicks.json", "--placement", "random", "--k", "2"],
     "--k, --placement shape synthesized labels"),
    (["--to", "scribbles", "--from-annotations", "xml", "--length-ratio", "0"], "--length-ratio shapes synthesized"),
    (["--to", "points", "--max-rank", "2"], "--max-rank selects human clicks by rank: it needs --from-annotations"),
])
def test_options_the_label_source_ignores_are_usage_errors(tmp_path, capsys, args, named):
    # human annotations are read as they are: synthesis options would be silently ignored
    with pytest.raises(SystemExit) as err:
        main(["convert", "voc", "--out", str(tmp_path / "o"), *args])
    assert err.value.code == 2 and named in capsys.readouterr().err


def test_options_of_the_kind_and_defaults_are_accepted(tmp_path):
    assert main(["convert", "voc", "--to", "scribbles", "--width", "5", "--length-ratio", "0.5", "--min-area", "3",
                 "--no-background", "--out", str(tmp_path / "s"), "--quiet"]) == EXIT_OK
    opts = json.loads((tmp_path / "s" / ".weaklabels.json").read_text())["options"]
    assert (opts["width"], opts["length_ratio"], opts["min_area"], opts["background"]) == (5.0, 0.5, 3, False)
    assert opts["points_k"] == 1 and opts["placement"] == "center"  # defaults of other kinds: plain values
    assert main(["convert", "voc", "--to", "points", "--k", "2", "--placement", "random", "--point-radius", "1",
                 "--out", str(tmp_path / "p"), "--quiet"]) == EXIT_OK
    assert main(["report", "voc", "--to", "boxes", "--connectivity", "4", "--limit", "1", "--quiet"]) == EXIT_OK


@pytest.mark.parametrize("dataset", ["hf", "densepose"])
def test_masks_option_is_refused_where_it_would_be_ignored(tmp_path, capsys, dataset):
    with pytest.raises(SystemExit) as err:
        main(["convert", dataset, "--to", "points", "--masks", "none", "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and f"--masks none is for voc and coco; {dataset}" in capsys.readouterr().err
