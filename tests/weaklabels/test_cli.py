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
