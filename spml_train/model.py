"""The SPML network: a dilated ResNet, an embedding head and the joint softmax head.

    images (B, 3, H, W), ImageNet-normalised (torchvision's mean/std)
      -> backbone   ResNet at output stride 8                (B, C4, ceil(H/8), ceil(W/8))
      -> embed      ASPP (VOC) or pyramid pooling (DensePose),
                    upsampled to the stride-4 grid, L2-normalised
                                                             (B, D, ceil(H/4), ceil(W/4))
      -> classifier joint softmax head on the *detached* embedding
                                                             (B, C, ceil(H/4), ceil(W/4))

The stride-4 grid is exactly the layer1 grid of the ResNet, ceil(H/4) x ceil(W/4)
(a 512 crop gives 128 x 128, a 513 crop 129 x 129). Upsampling to that size instead
of a blind "x2" keeps odd input sizes consistent with nearest-resized labels.

The ResNet is written here, not imported from torchvision (whose PyPI wheels do not
load beside the CPU torch build we use), with torchvision's parameter names so that
its published ImageNet state dicts load key for key (``load_backbone``).

Learning rates follow the reference (SPML.md section 5): ``param_groups`` gives each
group an ``lr_mult`` for the poly scheduler; ``freeze_stem`` freezes conv1, bn1 and
layer1 and keeps their batch norms in eval mode through ``SPMLNet.train``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from weaklabels.errors import MissingFileError, WeaklabelsError

logger = logging.getLogger(__name__)


class ModelError(WeaklabelsError, ValueError):
    """An unknown architecture name, or backbone weights that do not fit the network."""


# --------------------------------------------------------------------------- ResNet


def _conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    # padding = dilation keeps the size for stride 1, and gives ceil(h/2) for stride 2.
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (resnet18, resnet_tiny). x: (B, inplanes, h, w) -> (B, planes, h', w').

    torchvision refuses dilation > 1 here; we allow it so the small backbones are dilated
    to output stride 8 like the big ones (parameter names are unaffected).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride, dilation) -> 1x1 x4, torchvision's "ResNet v1.5" (stride on the 3x3)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# name -> (block, blocks per layer, widths of layer1..4)
_ARCHS: dict[str, tuple[type[nn.Module], tuple[int, ...], tuple[int, ...]]] = {
    "resnet101": (Bottleneck, (3, 4, 23, 3), (64, 128, 256, 512)),
    "resnet50": (Bottleneck, (3, 4, 6, 3), (64, 128, 256, 512)),
    "resnet18": (BasicBlock, (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet_tiny": (BasicBlock, (1, 1, 1, 1), (16, 32, 64, 128)),
}

# torchvision's IMAGENET1K_V1 weights (the file name carries the hash prefix checked on download).
IMAGENET_URLS: dict[str, str] = {
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
}

BACKBONES = tuple(_ARCHS)
EMBEDDINGS = ("aspp", "psp")

# The stem and layer1 are frozen (SPML.md section 5); names are relative to SPMLNet.
STEM = ("backbone.conv1", "backbone.bn1", "backbone.layer1")


class ResNet(nn.Module):
    """A ResNet without pooling or fc, dilated to output stride 8.

    Strides 1, 2, 1, 1 and dilations 1, 1, 2, 4 for layer1..4, built like torchvision's
    ``replace_stride_with_dilation=[False, True, True]``: in a dilated layer the first
    block keeps the previous dilation and the following blocks use the new one.

    forward: x (B, 3, H, W) -> dict of layer outputs
        layer1 (B, 1*w*e, ceil(H/4), ceil(W/4)), layer2..4 (B, k*w*e, ceil(H/8), ceil(W/8)),
    with w the layer width and e the block expansion (4 for Bottleneck, 1 for BasicBlock).
    """

    def __init__(self, arch: str):
        super().__init__()
        block, layers, widths = _ARCHS[arch]
        self.arch = arch
        self.inplanes = widths[0]
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2, dilate=True)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2, dilate=True)
        self.out_channels = widths[3] * block.expansion
        self.layer1_channels = widths[0] * block.expansion

        # torchvision's initialisation, so "weights=none" trains like a torchvision ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int,
                    dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, previous_dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return {"layer1": c1, "layer2": c2, "layer3": c3, "layer4": c4}


def build_backbone(arch: str) -> ResNet:
    """A randomly initialised dilated ResNet (``arch`` in ``BACKBONES``)."""
    if arch not in _ARCHS:
        raise ModelError(f"unknown backbone {arch!r}; expected one of {', '.join(BACKBONES)}")
    return ResNet(arch)


# ------------------------------------------------------------------ backbone weights


def _preview(keys: Iterable[str], n: int = 5) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _read_checkpoint(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise MissingFileError(
            f"backbone weights {str(path)!r}: no such file; expected 'imagenet', 'none' "
            "or the path of a checkpoint")
    try:
        # weights_only: a checkpoint is data; never run code from it.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"backbone weights {str(path)!r}: cannot be read as a torch "
                         f"checkpoint of tensors ({err})") from err
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        return obj
    raise ModelError(f"backbone weights {str(path)!r}: expected a state dict or a dict with "
                     f"a 'model' or 'state_dict' entry, got {type(obj).__name__}")


def _backbone_state(state: Mapping[str, object]) -> dict[str, object]:
    """Keep the backbone keys of a torchvision, DDP or whole-SPMLNet state dict."""
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DDP
    if any(k.startswith("backbone.") for k in state):  # a whole SPMLNet checkpoint
        state = {k.removeprefix("backbone."): v for k, v in state.items()
                 if k.startswith("backbone.")}
    # torchvision's classifier has no place here; the embedding head replaces it.
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _load_strict(backbone: ResNet, state: Mapping[str, object], source: str) -> None:
    """Load every backbone tensor or nothing: the checks run before any copy."""
    own = backbone.state_dict()
    # BatchNorm's step counter is absent from old torchvision files and is never used
    # (momentum is set), so it may be missing.
    missing = {k for k in own.keys() - state.keys() if not k.endswith("num_batches_tracked")}
    unexpected = state.keys() - own.keys()
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_preview(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_preview(unexpected)})")
        raise ModelError(f"backbone weights {source} do not fit {backbone.arch}: "
                         + "; ".join(parts))
    bad = [f"{k}: {tuple(getattr(state[k], 'shape', ()))} vs {tuple(own[k].shape)}"
           for k in sorted(own.keys() & state.keys())
           if not isinstance(state[k], torch.Tensor) or state[k].shape != own[k].shape]
    if bad:
        raise ModelError(f"backbone weights {source} do not fit {backbone.arch}: "
                         f"{len(bad)} shape mismatches (checkpoint vs model), "
                         + "; ".join(bad[:5]))
    backbone.load_state_dict(state, strict=False)


def load_backbone(model: nn.Module, weights: str) -> nn.Module:
    """Initialise the backbone of ``model`` (an SPMLNet or a ResNet) in place; returns ``model``.

    weights:
      "none"      keep the random initialisation;
      "imagenet"  torchvision's ImageNet weights, downloaded once into the torch hub cache;
      a path      a ``torch.save``d state dict, or a dict holding one under "model" or
                  "state_dict". ``fc.*`` keys are ignored, "module." prefixes (DDP) are
                  stripped, and from a whole-SPMLNet checkpoint only ``backbone.*`` is used.
    Every backbone key must be present with the right shape and no other key may be.
    """
    backbone = model.backbone if isinstance(model, SPMLNet) else model
    if not isinstance(backbone, ResNet):
        raise ModelError(f"load_backbone expects an SPMLNet or ResNet, got {type(model).__name__}")
    if weights == "none":
        return model
    if weights == "imagenet":
        url = IMAGENET_URLS.get(backbone.arch)
        if url is None:
            raise ModelError(f"no ImageNet weights for backbone {backbone.arch!r}; available "
                             f"for {', '.join(IMAGENET_URLS)} (use weights='none' or a path)")
        logger.info("loading ImageNet weights for %s from %s", backbone.arch, url)
        try:
            # torch.hub caches the file under $TORCH_HOME and checks its sha256 prefix (in the name)
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                       check_hash=True)
        except (OSError, RuntimeError) as err:  # no network (URLError is an OSError), bad hash
            raise ModelError(f"could not fetch the ImageNet weights of {backbone.arch} from {url}: {err}; "
                             f"offline, download that file elsewhere and pass model.weights=PATH") from err
        source = url
    else:
        path = Path(weights)
        state = _read_checkpoint(path)
        source = repr(str(path))
    _load_strict(backbone, _backbone_state(state), source)
    return model


# --------------------------------------------------------------------------- heads


def _to_grid(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (the reference's x2 upsampling, align_corners=False) to the stride-4 grid."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _unit(x: torch.Tensor) -> torch.Tensor:
    # fp32 even under autocast: the loss uses exp(kappa * cos) with kappa up to 16, where
    # bf16's 3 significant digits in the cosine would already be visible.
    return F.normalize(x.float(), dim=1, eps=1e-12)


class ASPPEmbedding(nn.Module):
    """DeepLab-v2 ASPP as an embedding: four 3x3 convs (dilation 6/12/18/24), summed.

    No norm and no activation, as in the reference: the embedding is L2-normalised, so
    the last op before the sphere must be free to produce any direction.

    forward: feats (B, in_channels, h8, w8), size (h4, w4) -> (B, dim, h4, w4), unit norm.
    """

    def __init__(self, in_channels: int, dim: int, rates: tuple[int, ...] = (6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, dim, 3, padding=r, dilation=r, bias=True) for r in rates)

    def forward(self, feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = sum(branch(feats) for branch in self.branches)
        return _unit(_to_grid(x, size))


class PSPEmbedding(nn.Module):
    """PSPNet pyramid pooling as an embedding (DensePose, D = 32), as the reference builds it.

    Each bin (1, 2, 3, 6) average-pools the features to bin x bin, reduces them with a
    1x1 conv + BN + ReLU to ``channels``, and is upsampled back; the input and the four
    pooled maps are concatenated and fused by a 3x3 conv + BN + ReLU to ``channels``; a
    1x1 conv (with bias) projects to ``dim``.

    forward: feats (B, in_channels, h8, w8), size (h4, w4) -> (B, dim, h4, w4), unit norm.
    """

    def __init__(self, in_channels: int, dim: int, channels: int = 512,
                 bins: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        self.pools = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, channels, 1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )
            for b in bins)
        self.fuse = nn.Sequential(
            nn.Conv2d(in_channels + channels * len(bins), channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Conv2d(channels, dim, 1, bias=True)

    def forward(self, feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = feats.shape[-2:]
        pooled = [F.interpolate(p(feats), size=(h, w), mode="bilinear", align_corners=False)
                  for p in self.pools]
        x = self.project(self.fuse(torch.cat([feats, *pooled], dim=1)))
        return _unit(_to_grid(x, size))


class SoftmaxHead(nn.Module):
    """The joint softmax head (stage 1), and the stage-2 classifier built fresh with the same shape.

    3x3 conv D -> 2D (no bias, BN follows), BN, ReLU, dropout, 1x1 conv to the classes.
    The input is detached here, not by the caller: cross-entropy trains only this head and
    must never shape the embedding (SPML.md section 6).

    forward: emb (B, D, h, w), unit norm -> logits (B, num_classes, h, w).
    """

    def __init__(self, dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Conv2d(dim, 2 * dim, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * dim)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.cls = nn.Conv2d(2 * dim, num_classes, 1, bias=True)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.bn(self.conv(emb.detach()))))
        return self.cls(x)


# --------------------------------------------------------------------------- network


class SPMLNet(nn.Module):
    """Backbone + embedding head + joint softmax head.

    forward: images (B, 3, H, W) -> dict
        embedding (B, D, ceil(H/4), ceil(W/4)), fp32, unit norm over D
        logits    (B, C, ceil(H/4), ceil(W/4)), computed on the detached embedding

    Works with ``channels_last`` inputs and weights (nothing here calls ``.view``).
    ``train()`` keeps the batch norms of frozen parts (``freeze``/``freeze_stem``) in eval
    mode, so their running statistics stay those of the loaded weights.
    """

    def __init__(self, backbone: ResNet, embed: nn.Module, classifier: SoftmaxHead):
        super().__init__()
        self.backbone = backbone
        self.embed = embed
        self.classifier = classifier
        self.frozen: tuple[str, ...] = ()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        size = tuple(feats["layer1"].shape[-2:])
        emb = self.embed(feats["layer4"], size)
        return {"embedding": emb, "logits": self.classifier(emb)}

    def train(self, mode: bool = True) -> SPMLNet:
        super().train(mode)
        # Matched by name, not by module object, so this survives
        # nn.SyncBatchNorm.convert_sync_batchnorm swapping the BN modules.
        for name, m in self.named_modules():
            if isinstance(m, _BatchNorm) and _under(name, self.frozen):
                m.eval()
        return self


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def build_model(backbone: str, embedding: str, dim: int, num_classes: int,
                weights: str = "none", psp_channels: int = 512,
                dropout: float = 0.1) -> SPMLNet:
    """Build an SPMLNet.

    backbone: one of ``BACKBONES``; embedding: "aspp" (VOC, D = 64) or "psp" (DensePose,
    D = 32, ``psp_channels`` wide); weights: see ``load_backbone``.
    Nothing is frozen here: call ``freeze_stem`` before ``param_groups``.
    """
    if embedding not in EMBEDDINGS:
        raise ModelError(f"unknown embedding head {embedding!r}; expected one of "
                         f"{', '.join(EMBEDDINGS)}")
    if dim < 1 or num_classes < 1:
        raise ModelError(f"dim and num_classes must be >= 1, got dim={dim}, "
                         f"num_classes={num_classes}")
    net = build_backbone(backbone)
    if embedding == "aspp":
        embed: nn.Module = ASPPEmbedding(net.out_channels, dim)
    else:
        embed = PSPEmbedding(net.out_channels, dim, channels=psp_channels)
    model = SPMLNet(net, embed, SoftmaxHead(dim, num_classes, dropout))
    return load_backbone(model, weights)


# ------------------------------------------------------------ freezing and lr groups


def freeze(model: SPMLNet, prefixes: Iterable[str]) -> SPMLNet:
    """Freeze the parameters under ``prefixes`` (e.g. "backbone.layer1") and keep their BNs in eval.

    Stage 2 uses ``freeze(model, ("backbone", "embed"))`` to train a classifier on the
    frozen embedding.
    """
    prefixes = tuple(prefixes)
    names = dict(model.named_modules())
    unknown = [p for p in prefixes if p not in names]
    if unknown:
        raise ModelError(f"cannot freeze {', '.join(unknown)}: no such module; top-level "
                         f"modules are {', '.join(n for n, _ in model.named_children())}")
    for name, p in model.named_parameters():
        if _under(name, prefixes):
            p.requires_grad_(False)
    model.frozen = tuple(dict.fromkeys(model.frozen + prefixes))
    return model.train(model.training)


def freeze_stem(model: SPMLNet) -> SPMLNet:
    """Freeze conv1, bn1 and layer1 (SPML.md section 5), parameters and BN statistics."""
    return freeze(model, STEM)


# Reference multipliers (SPML.md section 5); biases get twice their part's rate.
LR_MULT = {"backbone": 1.0, "embed": 10.0, "classifier": 10.0}


def lr_factor(it: int, iterations: int, *, warmup: int = 0, warmup_factor: float = 0.1,
              power: float = 0.9) -> float:
    """The reference's schedule as a factor of the base learning rate: a linear warm-up from
    ``warmup_factor`` over ``warmup`` steps, then poly decay with ``power`` (stage 1, the stage-2
    head and the CAM classifier all use it)."""
    if it < warmup:
        return warmup_factor + (1 - warmup_factor) * it / warmup
    return (1 - it / max(iterations, 1)) ** power


def param_groups(model: SPMLNet, lr: float, weight_decay: float = 5e-4,
                 norm_weight_decay: bool = True) -> list[dict]:
    """SGD parameter groups with the reference's learning-rate multipliers.

    Each trainable parameter (``requires_grad``) lands in exactly one group; frozen ones
    in none, so call ``freeze_stem`` first. Each group has "params", "lr" (= lr * lr_mult),
    "lr_mult" (for the poly scheduler: lr_t = base_lr_t * lr_mult), "weight_decay" and "name".

    backbone weights 1x, embedding and classifier heads 10x; every bias (conv biases and
    BN shifts) twice its part's rate and without weight decay. BN scales are treated as
    weights, as the reference does (it splits on the name "weight" vs "bias"): 1x/10x with
    decay. ``norm_weight_decay=False`` keeps their rate but drops their decay (a common
    modern choice; a decayed scale is pulled toward zero, which a BN-normalised net does
    not need).
    """
    norm_params = {id(p) for m in model.modules() if isinstance(m, _BatchNorm)
                   for p in m.parameters(recurse=False)}
    groups: dict[tuple[str, str, bool], dict] = OrderedDict()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = name.split(".", 1)[0]
        if part not in LR_MULT:
            raise ModelError(f"parameter {name!r} is outside the known parts "
                             f"{', '.join(LR_MULT)}; it would get no learning rate")
        is_bias = name.endswith(".bias")
        is_norm = id(p) in norm_params
        mult = LR_MULT[part] * (2.0 if is_bias else 1.0)
        decay = not is_bias and (norm_weight_decay or not is_norm)
        kind = "bias" if is_bias else ("norm_weight" if is_norm and not decay else "weight")
        key = (part, kind, decay)
        if key not in groups:
            groups[key] = {"name": f"{part}.{kind}", "params": [], "lr": lr * mult,
                           "lr_mult": mult, "weight_decay": weight_decay if decay else 0.0}
        groups[key]["params"].append(p)
    return list(groups.values())


def embedding_size(height: int, width: int) -> tuple[int, int]:
    """The stride-4 grid of an H x W input: (ceil(H/4), ceil(W/4)), e.g. 512 -> 128, 513 -> 129."""
    return math.ceil(height / 4), math.ceil(width / 4)
