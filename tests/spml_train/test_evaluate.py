"""Independent checks of evaluation (``spml_train/evaluate.py``) against SPML.md section 7:
confusion / mIoU against a brute-force IoU, ``evaluate`` with fake models, multi-scale + flip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from spml_train import data as data_mod
from spml_train import evaluate as ev

from parquet_helpers import vocab_of, write_dataset

IGNORE, UNLABELLED = 255, 254


# --------------------------------------------------------------------------- confusion / mIoU


def _brute_miou(preds, gts, C):
    per = []
    for c in range(C):
        inter = union = 0
        for p, g in zip(preds, gts):
            keep = g != IGNORE
            inter += int(((p == c) & (g == c) & keep).sum())
            union += int((((p == c) | (g == c)) & keep).sum())
        per.append(None if union == 0 else 100.0 * inter / union)
    vals = [v for v in per if v is not None]
    return sum(vals) / len(vals), per


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_scores_match_brute_force_iou(seed):
    rng = np.random.default_rng(seed)
    C = 6
    preds, gts = [], []
    for _ in range(3):
        h, w = rng.integers(5, 30, size=2)
        g = rng.choice([0, 1, 2, 3, IGNORE], size=(h, w), p=[0.3, 0.2, 0.2, 0.1, 0.2]).astype(np.uint8)
        p = rng.choice([0, 1, 2, 4], size=(h, w)).astype(np.uint8)   # 3: in gt, never predicted
        p[g == IGNORE] = 5   # predictions at ignored pixels do not count: class 5 is absent everywhere
        preds.append(p)
        gts.append(g)
    conf = sum(ev.confusion(p, g, C) for p, g in zip(preds, gts))
    got = ev.scores(conf, [f"k{i}" for i in range(C)])
    miou, per = _brute_miou(preds, gts, C)
    assert got["mIoU"] == pytest.approx(miou, abs=1e-9)
    for i in range(C):
        v = got["per_class_iou"][f"k{i}"]
        assert (v is None) == (per[i] is None)
        if v is not None:
            assert v == pytest.approx(per[i], abs=1e-9)
    assert got["per_class_iou"]["k5"] is None and got["per_class_iou"]["k3"] == 0.0
    assert conf.sum() == sum(int((g != IGNORE).sum()) for g in gts)


def test_miou_is_over_the_split_not_a_mean_of_images():
    C = 2
    g1, p1 = np.zeros((1, 10), np.uint8), np.zeros((1, 10), np.uint8)          # perfect, class 0
    g2 = np.array([[1] * 10 + [0] * 90], np.uint8)
    p2 = np.array([[1] * 5 + [0] * 95], np.uint8)
    conf = ev.confusion(p1, g1, C) + ev.confusion(p2, g2, C)
    miou, _ = _brute_miou([p1, p2], [g1, g2], C)
    assert ev.scores(conf, ["a", "b"])["mIoU"] == pytest.approx(miou)
    per_image = np.mean([100.0, _brute_miou([p2], [g2], C)[0]])
    assert abs(miou - per_image) > 1


# --------------------------------------------------------------------------- predict / evaluate


class ColourModel(torch.nn.Module):
    """Full-resolution logits: class c scores -distance of the pixel's colour to COLOURS[c]."""

    def __init__(self, colours: np.ndarray):
        super().__init__()
        norm = (colours.astype(np.float32) - data_mod.MEAN) / data_mod.STD
        self.register_buffer("centres", torch.from_numpy(norm))   # (C, 3)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        d = ((x[:, None] - self.centres[None, :, :, None, None]) ** 2).sum(2)  # (B, C, H, W)
        return {"logits": -10 * d, "embedding": x}


COLOURS = np.array([[0, 0, 0], [250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], np.uint8)


def test_evaluate_writes_metrics_matching_brute_force(tmp_path):
    C = 5
    rng = np.random.default_rng(0)
    vocab = vocab_of(C)
    items, preds, gts = [], [], []
    for k in range(3):
        h, w = 12 + 2 * k, 16 + 4 * k
        pc = rng.choice([0, 1, 2], size=(h, w)).astype(np.uint8)       # class 3, 4 never predicted
        gt = rng.choice([0, 1, 2, 3, IGNORE], size=(h, w)).astype(np.uint8)  # class 4 absent from gt
        items.append({"image": COLOURS[pc], "weak": gt, "gt": gt, "image_id": f"img{k}"})
        preds.append(pc)
        gts.append(gt)
    write_dataset(tmp_path / "ds", "val", vocab, items)
    ds = data_mod.ConvertedDataset(tmp_path / "ds", "val", kind="tags", train=False)
    # batch_size 1 as the pipeline uses (collate stacks `image`, so sizes must agree within a batch)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, collate_fn=data_mod.collate)
    model = ColourModel(COLOURS)
    model.train()
    out = tmp_path / "out"
    out.mkdir()
    m = ev.evaluate(model, loader, vocab, out, device=torch.device("cpu"), split="myval", progress=False)
    assert model.training, "evaluate restores the training mode"
    disk = json.loads((out / "metrics.json").read_text())
    miou, per = _brute_miou(preds, gts, C)
    for got in (m, disk):
        assert got["split"] == "myval" and got["images"] == 3
        assert got["mIoU"] == pytest.approx(miou, abs=1e-6)
        assert list(got["per_class_iou"]) == list(vocab.names)
        for name, ref in zip(vocab.names, per):
            v = got["per_class_iou"][name]
            assert (v is None) == (ref is None)
            if ref is not None:
                assert v == pytest.approx(ref, abs=1e-6)
    assert disk["per_class_iou"]["c4"] is None
    conf = np.load(out / "confusion.npy")
    assert conf.sum() == sum(int((g != IGNORE).sum()) for g in gts)
    for k, pc in enumerate(preds):
        saved = np.array(Image.open(out / "predictions" / f"img{k}.png"))
        assert (saved == pc).all()


class ViewModel(torch.nn.Module):
    """Spatially constant logits chosen by the view: its width and whether its left half is brighter
    (an unflipped view of the test image) or its right half (a flipped view). Logits at stride 4."""

    def __init__(self, table: dict):
        super().__init__()
        self.table = table
        self.seen = []

    def forward(self, x):
        _, _, h, w = x.shape
        flipped = bool(x[0, 0, :, w // 2:].mean() > x[0, 0, :, : w // 2].mean())
        self.seen.append((w, flipped))
        logits = torch.tensor(self.table[(w, flipped)], dtype=torch.float32)
        return {"logits": logits[None, :, None, None].expand(1, -1, max(h // 4, 1), max(w // 4, 1))}


def _lr_image(h=16, w=32) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 200
    img[:, w // 2:] = 20
    return img


# view probabilities (classes 0..3); logits = log p
_P = {(16, False): [0.02, 0.24, 0.48, 0.26], (16, True): [0.17, 0.77, 0.05, 0.01],
      (32, False): [0.19, 0.01, 0.03, 0.77], (32, True): [0.05, 0.14, 0.03, 0.78],
      (48, False): [0.03, 0.33, 0.37, 0.27], (48, True): [0.01, 0.97, 0.01, 0.01]}
_TABLE = {k: np.log(v).tolist() for k, v in _P.items()}
_SWAP = np.array([0, 2, 1, 3])   # classes 1 and 2 are a left / right pair


def _expected(scales, flip, perm):
    """Brute force: mean over views of each view's probabilities, flipped views' classes mapped back."""
    views = []
    for s in scales:
        w = int(32 * s)
        views.append(np.array(_P[(w, False)]))
        if flip:
            p = np.array(_P[(w, True)])
            views.append(p[perm] if perm is not None else p)
    return np.mean(views, 0)


def test_predict_averages_scales_and_flip_with_flip_perm():
    image = data_mod.normalize(_lr_image())
    scales = [0.5, 1.0, 1.5]
    for flip, perm in ((False, None), (True, None), (True, _SWAP)):
        model = ViewModel(_TABLE)
        probs = ev.predict(model, image, scales, flip,
                           None if perm is None else torch.as_tensor(perm))
        assert probs.shape == (4, 16, 32)
        assert sorted(model.seen) == sorted([(int(32 * s), f) for s in scales for f in ([False, True] if flip
                                                                                         else [False])])
        total = probs.sum(0)
        assert torch.allclose(total, total[0, 0].expand_as(total), atol=1e-5)  # a fixed multiple of 1
        got = (probs / total).numpy()
        ref = _expected(scales, flip, perm)
        assert np.allclose(got, ref[:, None, None], atol=1e-5)
    # the table discriminates: dropping the perm, the flip or any scale changes the decision
    full = int(_expected(scales, True, _SWAP).argmax())
    for alt in (_expected(scales, True, None), _expected(scales, False, None), _expected([1.0], True, _SWAP),
                _expected([0.5, 1.0], True, _SWAP), _expected([1.0, 1.5], True, _SWAP)):
        assert int(alt.argmax()) != full


def test_predict_flips_the_flipped_view_back():
    """A flip-equivariant stride-4 model: flip averaging gives the unflipped probabilities."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 1)

    def model(x):
        return {"logits": conv(F.avg_pool2d(x, 4))}

    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 255, size=(4, 8, 3)), 4, 0), 4, 1).astype(np.uint8)
    image = data_mod.normalize(img)
    with torch.no_grad():
        single = ev.predict(model, image, [1.0], False)
        both = ev.predict(model, image, [1.0], True)
        assert torch.allclose(single.sum(0), torch.ones(16, 32), atol=1e-5)
        ref = F.interpolate(conv(F.avg_pool2d(image[None], 4)), size=(16, 32), mode="bilinear",
                            align_corners=False).softmax(1)[0]
    assert torch.allclose(single, ref, atol=1e-6)
    assert torch.allclose(both / both.sum(0), single, atol=1e-5)
    # not mirror-symmetric, so a missing flip-back would show
    assert not torch.allclose(single, single.flip(-1), atol=1e-3)


def test_evaluate_multiscale_flip_uses_every_view(tmp_path):
    C = 4
    vocab = vocab_of(C)
    gt = np.zeros((16, 32), np.uint8)
    gt[:, :8] = 1
    gt[0, :] = IGNORE
    write_dataset(tmp_path / "ds", "val", vocab, [{"image": _lr_image(), "weak": gt, "gt": gt}])
    ds = data_mod.ConvertedDataset(tmp_path / "ds", "val", kind="tags", train=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, collate_fn=data_mod.collate)
    flip_perm = np.arange(256)
    flip_perm[[1, 2]] = [2, 1]
    scales = [0.5, 1.0, 1.5]
    (tmp_path / "o").mkdir()
    m = ev.evaluate(ViewModel(_TABLE), loader, vocab, tmp_path / "o", device=torch.device("cpu"),
                    scales=scales, flip=True, flip_perm=flip_perm, save_predictions=True, progress=False)
    cls = int(_expected(scales, True, _SWAP).argmax())
    # dropping the flip or a scale would predict another class: check the prediction itself
    for alt in (_expected(scales, False, None), _expected([0.5, 1.0], True, _SWAP), _expected([1.0, 1.5], True, _SWAP)):
        assert int(alt.argmax()) != cls
    written = np.array(Image.open(tmp_path / "o" / "predictions" / "im000.png"))
    assert (written == cls).all()
    pred = np.full_like(gt, cls)
    miou, _ = _brute_miou([pred], [gt], C)
    assert m["mIoU"] == pytest.approx(miou)
    assert m["scales"] == scales and m["flip"] is True
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["mIoU"] == pytest.approx(miou)
