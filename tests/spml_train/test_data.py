"""The trainer's data module: toy data preparation (generated scenes, converted by weaklabels)."""

from __future__ import annotations

from hydra import compose, initialize

from spml_train import data as data_mod
from spml_train.config import register

register()


def _cfg(*overrides: str):
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name="spml", overrides=list(overrides))


def test_toy_data_follows_its_settings(tmp_path):
    small = _cfg("recipe=toy_tags", "data.shapes.num_train=4", "data.shapes.num_val=2")
    train, val = data_mod.prepare_toy(small, tmp_path)
    assert len(data_mod.ConvertedDataset(train, "train", kind="tags", train=True)) == 4
    assert data_mod.prepare_toy(small, tmp_path) == (train, val)  # reused, not regenerated
    bigger = _cfg("recipe=toy_tags", "data.shapes.num_train=6", "data.shapes.num_val=2")
    train6, val6 = data_mod.prepare_toy(bigger, tmp_path)
    assert train6 != train and val6 != val
    assert len(data_mod.ConvertedDataset(train6, "train", kind="tags", train=True)) == 6
    assert len(data_mod.ConvertedDataset(val6, "val", kind="tags", train=False)) == 2


def test_training_on_another_weak_kind_is_refused(tmp_path):
    import pytest

    from weaklabels.errors import SchemaError

    train, _ = data_mod.prepare_toy(_cfg("recipe=toy_scribbles", "data.shapes.num_train=4",
                                         "data.shapes.num_val=2"), tmp_path)
    with pytest.raises(SchemaError, match="holds scribbles weak labels .* data.kind=boxes"):
        data_mod.ConvertedDataset(train, "train", kind="boxes", train=True)
    data_mod.ConvertedDataset(train, "train", kind="points", train=True)  # SPML's one-point scribbles
    data_mod.ConvertedDataset(train, "train", kind="boxes", train=True, full_supervision=True)  # reads gt
