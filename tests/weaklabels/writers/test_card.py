from __future__ import annotations

import yaml

from weaklabels.convert import ConvertOptions
from weaklabels.stats import Summary
from weaklabels.types import Vocabulary
from weaklabels.writers.card import render_card, template_path


def test_card_front_matter_is_valid_yaml_with_configs():
    voc = Vocabulary(("background", "a|b"), source_ids=(None, 7))
    s = Summary(2)
    s.images[:] = [1, 1]
    s.annotations[:] = [0, 3]
    s.num_images = 1
    card = render_card(vocabulary=voc, options=ConvertOptions(kind="boxes"), summary=s,
                       data_files={"train": "data/train-*.parquet"}, sources={"train": {"reader": "voc", "root": "r"}},
                       num_errors=0, command="weaklabels convert voc --to boxes")
    assert template_path().name == "dataset_card.md"
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["task_categories"] == ["image-segmentation"]
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    assert "| 1 | a\\|b | 7 |" in body and "weaklabels convert voc --to boxes" in body


def _card(options, sources, num_warnings=0):
    s = Summary(21)
    s.num_images = 3
    return render_card(vocabulary=Vocabulary.voc(), options=options, summary=s,
                       data_files={"train": "data/train-*.parquet"}, sources=sources, num_errors=0,
                       command="weaklabels convert voc --to points", num_warnings=num_warnings)


def test_card_of_human_annotations_says_what_the_reader_did_not_the_protocol():
    human = {"annotations": "whats_the_point", "paths": ["a/clicks.json", "b/more.json"], "max_rank": 2}
    card = _card(ConvertOptions(kind="points", given=True, point_radius=1.5),
                 {"train": {"reader": "voc", "root": "r", "split": "train", "human": human}}, num_warnings=1009)
    assert "Protocol options" not in card and "grid cell" not in card and '"placement"' not in card
    assert "Reader `whats_the_point`" in card and "clicks outside the image are dropped" in card
    assert "`a/clicks.json`, `b/more.json`" in card and '`{"max_rank": 2}`' in card
    assert "radius `1.5`" in card and "1,009 warning(s)" in card and "warnings.json" in card
    synth = _card(ConvertOptions(kind="points"), {"train": {"reader": "voc", "root": "r", "split": "train"}})
    assert 'Protocol options: `{"k": 1, "per": "class", "placement": "center"' in synth
    assert "grid cell" in synth and "Reader" not in synth


def test_card_of_a_source_with_its_own_human_labels():
    card = _card(ConvertOptions(kind="points", given=True),
                 {"train": {"reader": "densepose", "annotations": "dp.json", "root": None, "split": "train"}})
    assert "source's own human annotations (reader `densepose`)" in card and "Protocol options" not in card
