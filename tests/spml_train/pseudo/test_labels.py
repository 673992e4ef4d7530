"""Dense pseudo labels: classes allowed per image and per box, propagation within similar pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spml_train.pseudo.crf import CRFParams, dense_crf
from spml_train.pseudo.labels import PseudoParams, box_mask, present_classes, pseudo_label, pseudo_probs
from weaklabels.types import Vocabulary

VOCAB = Vocabulary(names=("background", "a", "b"))


class Halves(torch.nn.Module):
    """Reads its answer off the image (so a flipped view flips it): channel 0 marks the left half
    (embedding e_0 there, e_1 elsewhere), channel 1 a small patch where class ``hot`` scores high;
    background scores everywhere. Stride 4."""

    def __init__(self, hot: int = 1):
        super().__init__()
        self.hot = hot

    def forward(self, x):
        pooled = torch.nn.functional.avg_pool2d(x, 4)
        emb = torch.cat([pooled[:, :1], 1 - pooled[:, :1]], 1)
        logits = torch.zeros(x.shape[0], 3, *pooled.shape[-2:])
        logits[:, 0] = 1.0
        logits[:, self.hot] = 4.0 * pooled[:, 1]
        return {"embedding": emb, "logits": logits}


def _image(H: int = 32, W: int = 32) -> torch.Tensor:
    img = torch.zeros(3, H, W)
    img[0, :, : W // 2] = 1
    img[1, :16, :16] = 1
    return img


def _run(params: PseudoParams, present=(0, 1), **kw):
    img = _image()
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :8] = 200  # a colour edge for the CRF's bilateral kernel
    return pseudo_label(Halves(kw.pop("hot", 1)), img, rgb, list(present), params, num_classes=3, background=0, **kw)


def test_present_classes_per_kind():
    weak = np.array([[0, 2, 254], [255, 2, 2]], np.uint8)
    assert present_classes("scribbles", [], weak, [], VOCAB) == [0, 2]
    assert present_classes("tags", [1], weak, [], VOCAB) == [0, 1]
    assert present_classes("boxes", [], weak, [{"label": 2}], VOCAB) == [0, 2]


def test_box_mask_allows_a_class_inside_its_boxes_only():
    m = box_mask([{"x0": 1.0, "y0": 0.0, "x1": 3.0, "y1": 2.0, "label": 2}], 3, 0, 4, 5)
    assert m[0].all() and not m[1].any()
    assert m[2, :2, 1:3].all() and m[2].sum() == 4


def test_random_walk_spreads_a_seed_over_its_half():
    params = PseudoParams(stride=8, crf=False)
    out = _run(params)
    # the class-1 score of the top-left quarter spreads over the whole left half (same embedding)
    # and beats background there; it never crosses to the right half (another embedding)
    # (bilinear upsampling from the 1/8 grid blurs the 16-pixel boundary by a few pixels)
    assert (out[:, :12] == 1).all() and (out[:, 16:] == 0).all()
    without = _run(PseudoParams(stride=8, crf=False, random_walk=False))
    assert (without == 1).mean() < 0.3 < 0.375 <= (out == 1).mean()


def test_classes_absent_from_the_weak_label_never_appear():
    out = _run(PseudoParams(stride=8, crf=False), present=(0,), hot=2)
    assert set(np.unique(out)) == {0}


def test_boxes_keep_each_class_inside_its_box():
    allowed = box_mask([{"x0": 0.0, "y0": 0.0, "x1": 8.0, "y1": 32.0, "label": 1}], 3, 0, 32, 32)
    out = _run(PseudoParams(stride=8, crf=True, crf_params=CRFParams(iterations=2)), allowed=allowed)
    assert (out[:, 8:] == 0).all() and (out[:, :8] == 1).mean() > 0.8


def test_the_label_is_the_crf_of_the_probabilities_before_it():
    # pseudo_probs is what the CRF refines (benchmarks/crf_sweep.py scores CRF settings on it)
    allowed = box_mask([{"x0": 0.0, "y0": 0.0, "x1": 20.0, "y1": 32.0, "label": 1}], 3, 0, 32, 32)
    crf = CRFParams(iterations=3, bilateral_rgb=30.0)
    probs = pseudo_probs(Halves(), _image(), [0, 1], PseudoParams(stride=8, crf_params=crf), num_classes=3,
                         background=0, allowed=allowed)
    assert probs.shape == (3, 32, 32) and torch.allclose(probs.sum(0), torch.ones(32, 32))
    assert (probs[1][~torch.from_numpy(allowed[1])] == 0).all() and (probs[2] == 0).all()
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :8] = 200
    refined = dense_crf(torch.from_numpy(rgb), probs, crf) * torch.from_numpy(allowed)
    assert np.array_equal(_run(PseudoParams(stride=8, crf_params=crf), allowed=allowed), refined.argmax(0).numpy())
    assert np.array_equal(_run(PseudoParams(stride=8, crf=False), allowed=allowed), probs.argmax(0).numpy())


def test_cam_source_uses_background_power():
    class Cams(torch.nn.Module):
        def cams(self, x):
            c = torch.zeros(x.shape[0], 2, x.shape[2] // 8, x.shape[3] // 8)
            c[:, 0] = torch.nn.functional.avg_pool2d(x[:, :1], 8)[:, 0]   # class 1 on the left half
            return c

    out = _run(PseudoParams(source="cam", stride=8, crf=False, random_walk=False), cam_model=Cams(), foreground=[1, 2])
    assert (out[:, :12] == 1).all() and (out[:, 20:] == 0).all()


def test_bad_params_are_rejected():
    with pytest.raises(ValueError, match="source"):
        PseudoParams(source="sam")
    with pytest.raises(ValueError, match="stride"):
        PseudoParams(stride=0)
