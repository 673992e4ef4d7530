from __future__ import annotations

import json

import numpy as np

from weaklabels.cli import EXIT_OK, main
from weaklabels.fidelity import measure
from weaklabels.sources.clicks import ClickAnnotations
from weaklabels.sources.voc import read_voc
from weaklabels.synth import synthesize
from weaklabels.types import Points, Sample, SemanticMask, Vocabulary


def test_precision_coverage_and_pairs_on_a_small_mask():
    voc = Vocabulary(("background", "a", "b"))
    m = np.zeros((4, 4), np.uint8)
    m[:2, :2] = 1
    m[3, 3] = 255
    s = Sample("x", 4, 4, voc, semantic=SemanticMask(m))
    weak = s.replace(points=Points([[0.5, 0.5], [3.5, 0.5], [3.5, 3.5]], [1, 2, 0]))
    human = s.replace(points=Points([[1.5, 1.5]], [1]))
    d = measure([s], lambda _: weak, "points", lambda _: human).to_dict()
    # pixel (0,0) is a (right), (0,3) is background not b (wrong), (3,3) is void (wrong)
    assert d["precision"] == 1 / 3
    assert d["coverage"] == 3 / 15
    assert d["fg_pairs_labelled"] == 1.0 and d["bg_pairs_labelled"] == 1.0
    assert d["human_on_class"] == 1.0
    assert np.isclose(d["click_distance_median"], np.hypot(1, 1) / 2)


def test_synthesis_is_exact_and_human_clicks_are_not(voc_masks, voc_points):
    src = read_voc(voc_masks, "sample")
    samples = [src[i] for i in range(60)]
    clicks = ClickAnnotations(voc_points / "whats_the_point_clicks.json")
    for kind in ("boxes", "points", "scribbles"):
        d = measure(samples, lambda s, k=kind: synthesize(s, k), kind).to_dict()
        assert d["precision"] == 1.0, kind
    h = measure(samples, lambda s: synthesize(clicks.attach(s), "points", given=True), "points").to_dict()
    assert 0.6 < h["precision"] < 1.0


def test_report_command(voc_masks, voc_points, capsys):
    assert main(["report", "voc", "--root", str(voc_masks), "--split", "sample", "--to", "scribbles",
                 "--limit", "20", "--quiet", "--clicks", str(voc_points / "whats_the_point_clicks.json")]) == EXIT_OK
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["images"] == 20 and d["precision"] == 1.0 and 0.005 < d["coverage"] < 0.05
