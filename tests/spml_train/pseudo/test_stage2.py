"""Stage 2: only the fresh head learns; the embedding stays exactly as stage 1 left it."""

from __future__ import annotations

import pytest
import torch

from spml_train.model import build_model
from spml_train.pseudo.stage2 import stage2_model, train_head


def _batches(n_classes: int):
    g = torch.Generator().manual_seed(0)
    while True:
        image = torch.randn(2, 3, 32, 32, generator=g)
        label = (image[:, 0] > 0).long() * (n_classes - 1)  # a label the image's first channel decides
        label[:, :2] = 255                                  # ignored rows
        yield 0, 0, {"image": image, "label": label}


def test_only_the_head_trains_and_the_loss_falls():
    torch.manual_seed(0)
    stage1 = build_model("resnet_tiny", "aspp", 8, 3)
    before = {k: v.clone() for k, v in stage1.state_dict().items()}
    model = stage2_model(stage1, 3)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    losses = train_head(model, _batches(3), 40, 0.1, torch.device("cpu"), log_every=5)
    assert losses[-1] < losses[0]
    for k, v in model.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, frozen[k]), k   # weights and BN statistics untouched
    for k, v in stage1.state_dict().items():
        assert torch.equal(v, before[k]), k       # the stage-1 model is not modified either
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("classifier."))


def test_the_head_starts_fresh():
    stage1 = build_model("resnet_tiny", "aspp", 8, 3)
    with torch.no_grad():
        stage1.classifier.cls.weight.fill_(1.0)
    model = stage2_model(stage1, 3)
    assert not torch.equal(model.classifier.cls.weight, stage1.classifier.cls.weight)


def test_schedule_warms_up_then_decays_with_biases_at_twice_the_rate(monkeypatch):
    """SPML.md section 5's template: classifier 10x (biases 20x, i.e. twice the head's lr) and 100
    warm-up iterations from 0.1x, then poly 0.9."""
    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append({g["weight_decay"]: g["lr"] for g in self.param_groups})
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    model = stage2_model(build_model("resnet_tiny", "aspp", 8, 3), 3)
    lr, iters, warm = 0.05, 20, 4
    train_head(model, _batches(3), iters, lr, torch.device("cpu"), warmup=warm, warmup_factor=0.1, progress=False)
    assert len(seen) == iters
    for it, rates in enumerate(seen):
        f = 0.1 + 0.9 * it / warm if it < warm else (1 - it / iters) ** 0.9
        assert rates[5e-4] == pytest.approx(lr * f)        # weights (with decay)
        assert rates[0.0] == pytest.approx(2 * lr * f)     # biases (no decay): twice the rate
