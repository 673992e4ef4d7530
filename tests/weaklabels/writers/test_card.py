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
