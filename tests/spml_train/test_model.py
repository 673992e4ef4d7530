"""spml_train.model: torchvision key compatibility, output stride, heads, weights, lr groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spml_train.model import (
    IMAGENET_URLS,
    STEM,
    ModelError,
    SPMLNet,
    build_backbone,
    build_model,
    embedding_size,
    freeze,
    freeze_stem,
    load_backbone,
    param_groups,
)
from weaklabels.errors import MissingFileError, WeaklabelsError

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_keys(blocks: tuple[int, ...], bottleneck: bool) -> list[str]:
    """torchvision's ResNet state-dict keys without fc, written from the architecture:
    stem conv1/bn1; per block conv1..n and bn1..n (n = 3 for Bottleneck, 2 for BasicBlock);
    block 0 of a layer has downsample.0 (conv) and downsample.1 (BN) when the stride or the
    width changes: every layer for Bottleneck (64 -> 256 in layer1), layers 2-4 for BasicBlock."""
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in BN_KEYS]
    n = 3 if bottleneck else 2
    for layer, count in enumerate(blocks, start=1):
        for i in range(count):
            p = f"layer{layer}.{i}"
            for j in range(1, n + 1):
                keys.append(f"{p}.conv{j}.weight")
                keys += [f"{p}.bn{j}.{k}" for k in BN_KEYS]
            if i == 0 and (bottleneck or layer > 1):
                keys.append(f"{p}.downsample.0.weight")
                keys += [f"{p}.downsample.1.{k}" for k in BN_KEYS]
    return keys


@pytest.fixture(scope="module")
def resnet101():
    return build_backbone("resnet101")


@pytest.mark.parametrize("arch, blocks, bottleneck, n_keys", [
    ("resnet101", (3, 4, 23, 3), True, 624),
    ("resnet50", (3, 4, 6, 3), True, 318),
    ("resnet18", (2, 2, 2, 2), False, 120),
])
def test_backbone_keys_match_torchvision(arch, blocks, bottleneck, n_keys, resnet101):
    net = resnet101 if arch == "resnet101" else build_backbone(arch)
    keys = list(net.state_dict())
    expected = torchvision_keys(blocks, bottleneck)
    assert len(expected) == n_keys  # torchvision's count (626 / 320 / 122) minus fc.weight, fc.bias
    assert keys == expected  # same names, same order


def test_exact_torchvision_keys_and_shapes(resnet101):
    sd = resnet101.state_dict()
    assert sd["layer3.22.bn3.running_var"].shape == (1024,)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert "layer3.23.conv1.weight" not in sd and "fc.weight" not in sd
    per_layer = {f"layer{i}": sum(k.startswith(f"layer{i}.") for k in sd) for i in range(1, 5)}
    assert per_layer == {"layer1": 3 * 18 + 6, "layer2": 4 * 18 + 6,
                         "layer3": 23 * 18 + 6, "layer4": 3 * 18 + 6}


def test_dilation_pattern_like_torchvision(resnet101):
    # replace_stride_with_dilation=[False, True, True]: the first block of a dilated layer
    # keeps the previous dilation.
    conv2 = {n: m for n, m in resnet101.named_modules() if n.endswith("conv2")}
    assert conv2["layer2.0.conv2"].stride == (2, 2)
    assert conv2["layer3.0.conv2"].dilation == (1, 1)
    assert all(conv2[f"layer3.{i}.conv2"].dilation == (2, 2) for i in range(1, 23))
    assert conv2["layer4.0.conv2"].dilation == (2, 2)
    assert conv2["layer4.2.conv2"].dilation == (4, 4)
    for n, m in resnet101.named_modules():
        if isinstance(m, nn.Conv2d) and n.startswith(("layer3", "layer4")):
            assert m.stride == (1, 1), n


@pytest.mark.parametrize("h, w", [(64, 64), (65, 77), (33, 40), (9, 7)])
def test_output_stride_8(h, w):
    net = build_backbone("resnet_tiny").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, h, w))
    assert out["layer1"].shape == (1, 16, math.ceil(h / 4), math.ceil(w / 4))
    assert out["layer2"].shape[-2:] == (math.ceil(h / 8), math.ceil(w / 8))
    assert out["layer4"].shape == (1, 128, math.ceil(h / 8), math.ceil(w / 8))


@pytest.mark.parametrize("embedding, dim", [("aspp", 8), ("psp", 6)])
@pytest.mark.parametrize("h, w", [(64, 64), (65, 51)])
def test_embedding_and_logits(embedding, dim, h, w):
    torch.manual_seed(0)
    model = build_model("resnet_tiny", embedding, dim, num_classes=5, psp_channels=16)
    out = model(torch.randn(2, 3, h, w))
    grid = embedding_size(h, w)
    assert grid == (math.ceil(h / 4), math.ceil(w / 4))
    assert out["embedding"].shape == (2, dim, *grid)
    assert out["embedding"].dtype == torch.float32
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(2, *grid), atol=1e-5)
    assert out["logits"].shape == (2, 5, *grid)


def test_512_crop_gives_128_grid():
    assert embedding_size(512, 512) == (128, 128)
    assert embedding_size(513, 640) == (129, 160)


def test_softmax_head_does_not_train_the_embedding():
    torch.manual_seed(0)
    model = build_model("resnet_tiny", "aspp", 8, num_classes=3)
    out = model(torch.randn(2, 3, 32, 32))
    out["logits"].square().sum().backward()
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, 32, 32))
    (out["embedding"][:, 0].sum()).backward()
    assert model.embed.branches[0].weight.grad is not None
    assert model.backbone.layer4[0].conv1.weight.grad is not None


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = build_model("resnet_tiny", "psp", 8, num_classes=4, psp_channels=16).eval()
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    for k in ("embedding", "logits"):
        assert torch.allclose(ref[k], out[k], atol=1e-4), k


# ------------------------------------------------------------------ backbone weights


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = build_backbone("resnet_tiny")
    for p in net.parameters():
        nn.init.normal_(p)
    return net.state_dict()


def _same_backbone(model: SPMLNet, state: dict[str, torch.Tensor]) -> bool:
    own = model.backbone.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "spmlnet_ddp"])
def test_load_local_checkpoint(tmp_path, wrap):
    state = _tiny_state(1)
    if wrap == "plain":  # torchvision-like: fc keys present and ignored
        obj = {**state, "fc.weight": torch.zeros(10, 128), "fc.bias": torch.zeros(10)}
    elif wrap == "spmlnet_ddp":
        obj = {f"module.backbone.{k}": v for k, v in state.items()}
        obj["module.embed.branches.0.weight"] = torch.zeros(1)
        obj = {"model": obj, "iteration": 7}
    else:
        obj = {wrap: state, "iteration": 7}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    model = build_model("resnet_tiny", "aspp", 8, 3, weights=str(path))
    assert _same_backbone(model, state)


def test_load_without_num_batches_tracked(tmp_path):
    # Old torchvision files predate BatchNorm's step counter.
    state = {k: v for k, v in _tiny_state(2).items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    model = build_model("resnet_tiny", "aspp", 8, 3, weights=str(tmp_path / "old.pth"))
    assert _same_backbone(model, state)


def test_imagenet_weights_come_from_torchvision_url(tmp_path, monkeypatch):
    torch.manual_seed(3)
    state = build_backbone("resnet18").state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    calls = []

    def fake_download(url, *args, **kwargs):
        calls.append(url)
        return torch.load(tmp_path / "resnet18-f37072fd.pth", map_location="cpu")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = build_model("resnet18", "aspp", 8, 3, weights="imagenet")
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]
    del state["fc.weight"], state["fc.bias"]
    assert _same_backbone(model, state)
    assert IMAGENET_URLS["resnet101"] == "https://download.pytorch.org/models/resnet101-63fe2227.pth"
    assert IMAGENET_URLS["resnet50"] == "https://download.pytorch.org/models/resnet50-0676ba61.pth"


def test_no_imagenet_weights_for_tiny(monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(ModelError, match="resnet101"):
        build_model("resnet_tiny", "aspp", 8, 3, weights="imagenet")


def test_key_errors_are_strict_and_load_nothing(tmp_path):
    model = build_model("resnet_tiny", "aspp", 8, 3)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    state = _tiny_state(4)
    del state["layer2.0.downsample.0.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ModelError, match=r"1 missing keys \(layer2\.0\.downsample\.0\.weight\)"):
        load_backbone(model, str(tmp_path / "missing.pth"))

    state = _tiny_state(4)
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ModelError, match="unexpected keys.*layer5.0.conv1.weight"):
        load_backbone(model, str(tmp_path / "extra.pth"))

    state = _tiny_state(4)
    state["layer4.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ModelError, match=r"layer4\.0\.conv2\.weight: \(128, 128, 1, 1\)"):
        load_backbone(model, str(tmp_path / "shape.pth"))

    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_resnet50_weights_do_not_fit_resnet101(tmp_path, resnet101):
    torch.save(build_backbone("resnet50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ModelError, match=r"missing keys \(layer3\.10\..*\(\d+ in all\)"):
        load_backbone(resnet101, str(tmp_path / "r50.pth"))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(MissingFileError, match="nope.pth.*'imagenet', 'none'"):
        build_model("resnet_tiny", "aspp", 8, 3, weights=str(tmp_path / "nope.pth"))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ModelError, match="resnet101, resnet50, resnet18, resnet_tiny"):
        build_model("resnet34", "aspp", 8, 3)
    with pytest.raises(ModelError, match="aspp, psp") as err:
        build_model("resnet_tiny", "deeplabv3", 8, 3)
    assert isinstance(err.value, WeaklabelsError) and isinstance(err.value, ValueError)


# ------------------------------------------------------------ freezing and lr groups


def _expected_mult(name: str) -> float:
    base = 1.0 if name.startswith("backbone.") else 10.0
    return base * (2.0 if name.endswith(".bias") else 1.0)


@pytest.mark.parametrize("embedding", ["aspp", "psp"])
@pytest.mark.parametrize("norm_weight_decay", [True, False])
def test_param_groups_cover_trainable_params_once(embedding, norm_weight_decay):
    model = freeze_stem(build_model("resnet_tiny", embedding, 8, 3, psp_channels=16))
    groups = param_groups(model, lr=3e-3, weight_decay=5e-4, norm_weight_decay=norm_weight_decay)
    name_of = {id(p): n for n, p in model.named_parameters()}
    seen = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(seen) == len(set(seen)) and set(seen) == trainable
    norm_names = {f"{m}.{k}" for m, mod in model.named_modules()
                  if isinstance(mod, nn.BatchNorm2d) for k in ("weight", "bias")}
    for g in groups:
        assert g["lr"] == pytest.approx(3e-3 * g["lr_mult"])
        for p in g["params"]:
            name = name_of[id(p)]
            assert g["lr_mult"] == _expected_mult(name), name
            decays = not name.endswith(".bias") and (norm_weight_decay or name not in norm_names)
            assert g["weight_decay"] == (5e-4 if decays else 0.0), name
    mults = {g["name"]: g["lr_mult"] for g in groups}
    assert mults["backbone.weight"] == 1 and mults["backbone.bias"] == 2
    assert mults["embed.weight"] == 10 and mults["embed.bias"] == 20
    assert mults["classifier.weight"] == 10 and mults["classifier.bias"] == 20
    torch.optim.SGD(groups, lr=3e-3, momentum=0.9)  # the groups are valid as given


def test_freeze_stem_keeps_frozen_bn_in_eval():
    torch.manual_seed(0)
    model = freeze_stem(build_model("resnet_tiny", "aspp", 8, 3))
    model.eval()
    model.train()
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            frozen = name.startswith(("backbone.bn1", "backbone.layer1."))
            assert m.training is not frozen, name
    stats = {k: v.clone() for k, v in model.state_dict().items()
             if k.startswith(("backbone.bn1.", "backbone.layer1.")) and "running" in k}
    out = model(torch.randn(2, 3, 32, 32))
    out["embedding"].sum().backward()
    for name, p in model.named_parameters():
        if name.startswith(STEM):
            assert not p.requires_grad and p.grad is None, name
    assert model.backbone.layer2[0].conv1.weight.grad is not None
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in stats.items())
    assert not model.backbone.layer2[0].bn1.running_mean.eq(0).all()  # unfrozen BN did update


def test_frozen_bn_survives_sync_bn_conversion():
    model = freeze_stem(build_model("resnet_tiny", "aspp", 8, 3))
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    assert isinstance(model.backbone.bn1, nn.SyncBatchNorm)
    assert not model.backbone.bn1.training and not model.backbone.layer1[0].bn2.training
    assert model.backbone.layer2[0].bn1.training and model.classifier.bn.training
    assert not model.backbone.conv1.weight.requires_grad


def test_stage2_freezes_everything_but_the_classifier():
    model = freeze(build_model("resnet_tiny", "aspp", 8, 3), ("backbone", "embed"))
    assert [g["name"] for g in param_groups(model, 1e-3)] == [
        "classifier.weight", "classifier.bias"]
    with pytest.raises(ModelError, match="no such module.*backbone, embed, classifier"):
        freeze(model, ("head",))


@pytest.fixture()
def local_server(tmp_path):
    """A static file server on 127.0.0.1 serving ``tmp_path / "www"`` (the real download path)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_imagenet_download_through_torch_hub_from_a_local_server(tmp_path, monkeypatch, local_server):
    import hashlib

    from spml_train import model as model_mod

    root, base = local_server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in build_backbone("resnet18").state_dict().items()}
    torch.save(state, tmp_path / "w.pth")
    digest = hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()[:8]
    name = f"resnet18-{digest}.pth"  # torchvision's naming: the hash prefix is checked on download
    (root / name).write_bytes((tmp_path / "w.pth").read_bytes())
    monkeypatch.setitem(model_mod.IMAGENET_URLS, "resnet18", f"{base}/{name}")
    model = build_model("resnet18", "aspp", 8, 3, weights="imagenet")
    assert _same_backbone(model, state)
    assert (tmp_path / "hub" / "hub" / "checkpoints" / name).is_file()  # cached: no second download
    (root / name).unlink()
    assert _same_backbone(build_model("resnet18", "aspp", 8, 3, weights="imagenet"), state)
    # a file whose content does not match the hash in its name, and an unreachable server
    bad = f"resnet18-{'0' * 8}.pth"
    (root / bad).write_bytes((tmp_path / "w.pth").read_bytes())
    monkeypatch.setitem(model_mod.IMAGENET_URLS, "resnet18", f"{base}/{bad}")
    with pytest.raises(ModelError, match="could not fetch the ImageNet weights of resnet18.*model.weights=PATH"):
        build_model("resnet18", "aspp", 8, 3, weights="imagenet")
    monkeypatch.setitem(model_mod.IMAGENET_URLS, "resnet18", "http://127.0.0.1:9/resnet18-12345678.pth")
    with pytest.raises(ModelError, match="could not fetch"):
        build_model("resnet18", "aspp", 8, 3, weights="imagenet")
