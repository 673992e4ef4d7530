"""The trainer's configuration: one typed schema, recipes that set it.

``python -m spml_train recipe=NAME key=value ...`` composes, with Hydra, the
``SPMLConfig`` schema below (its defaults), then the recipe ``recipes/NAME.yaml``
(a recipe may name a ``base:`` recipe it extends), then the command-line
overrides. The schema is structured: an unknown key is an error. Every run
saves its resolved configuration as ``config.yaml`` in its run directory.

Hyperparameters live here and in the recipes only; the SPML settings per
annotation type follow ``SPML.md`` section 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf


@dataclass
class ShapesConfig:
    """Toy data: generate the shapes dataset and convert it with weaklabels before training."""

    num_train: int = 0          # 0: no toy data; the dataset paths below are used
    num_val: int = 64
    seed: int = 0
    height: int = 96
    width: int = 128
    num_classes: int = 5


@dataclass
class CAMConfig:
    """The CAM stage (``pseudo/cam.py``): C's labels for tags and boxes."""

    enabled: bool = False
    iterations: int = 300       # classifier training steps
    lr: float = 0.01
    alpha: float = 6.0          # background score (1 - max CAM) ** alpha
    threshold: float = 0.2      # tags: a pixel is labelled when its best score exceeds this
    # CAMs of the image and its flip at these scales, summed (PSA / SEAM's on VOC); toy scenes are
    # about a quarter of a VOC image's side, so the toy recipes scale up further
    scales: list[float] = field(default_factory=lambda: [0.5, 1.0, 1.5, 2.0])
    dir: str = ""               # externally computed CAMs: {image_id}.npy (C_fg, H, W) per image


@dataclass
class DataConfig:
    train: str = ""             # a folder written by `weaklabels convert` (parquet + vocabulary.json)
    val: str = ""               # same, for evaluation (holds `gt`)
    train_split: str = "train"
    val_split: str = "val"
    kind: str = "tags"          # the weak annotation the training set carries
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    crop: int = 512
    scale_min: float = 0.5
    scale_max: float = 1.5
    flip: bool = True
    flip_pairs: list[list[int]] = field(default_factory=list)  # classes a flip swaps (DensePose)
    dilate: float = 0.0         # px: grow thin labels (scribbles 3, points 6) so they survive stride 4
    batch_size: int = 16
    workers: int = 2
    full_supervision: bool = False  # train on `gt` instead of the weak label (the fully supervised bound)
    # boxes: in-box pixels without a CAM label stay unlabelled, as in SPML.md section 6; true: they
    # enter C as the candidate set {box classes, background} (weaklabels.segsets' set form), which
    # measured worse on the toy scenes (BENCHMARKS.md, "Toy training")
    box_candidates: bool = False
    cam: CAMConfig = field(default_factory=CAMConfig)


@dataclass
class ModelConfig:
    backbone: str = "resnet101"
    embedding: str = "aspp"     # aspp (VOC) or psp (DensePose)
    dim: int = 64
    weights: str = "imagenet"   # imagenet, none, or a checkpoint path
    psp_channels: int = 512


@dataclass
class SegmentsConfig:
    grid: int = 6               # k-means grid for training segments
    iterations: int = 10        # k-means iterations
    memory_iterations: int = 2  # memory bank keeps the segments of this many past steps


@dataclass
class LossConfig:
    lambda_c: float = 0.3
    kappa_c: float = 6.0
    lambda_o: float = 0.3
    kappa_o: float = 8.0
    lambda_v: float = 0.1
    kappa_v: float = 16.0
    lambda_a: float = 0.0       # off by default, as in the reference
    kappa_a: float = 12.0
    affinity_threshold: float = 0.95
    chunk: int = 0              # pixels per chunk of the SegSort+ computation (0: ~2 GiB of working blocks)


@dataclass
class OptimConfig:
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    iterations: int = 30000
    warmup: int = 100
    warmup_factor: float = 0.1
    poly_power: float = 0.9


@dataclass
class RunConfig:
    dir: Optional[str] = None   # everything a run writes; default: Hydra's output directory
    seed: int = 0
    device: str = "auto"        # auto, cpu, cuda
    amp: bool = True            # bf16 autocast for the network on GPU
    channels_last: bool = True
    checkpoint_every: int = 1000
    log_every: int = 20
    resume: bool = True         # continue from the run directory's last checkpoint
    threads: int = 0            # torch threads on CPU (0: torch's default)
    progress: bool = True


@dataclass
class PseudoConfig:
    """Dense pseudo labels after stage 1 (``pseudo/labels.py``; SPML.md section 6)."""

    random_walk: bool = True
    stride: int = 8             # the random walk's grid, in image pixels
    beta: float = 5.0           # affinity exp(beta (cos - 1))
    power: float = 20.0         # affinity ** power before column normalisation
    log2_steps: int = 6         # T ** (2 ** log2_steps)
    crf: bool = True
    crf_iterations: int = 10
    crf_gaussian: list[float] = field(default_factory=lambda: [3.0, 1.0])           # weight, xy std
    crf_bilateral: list[float] = field(default_factory=lambda: [4.0, 67.0, 3.0])    # weight, xy std, rgb std
    box_constraint: bool = True  # boxes: a class scores zero outside its boxes
    max_images: int = 0         # 0: the whole training split (a smaller number: quick experiments)


@dataclass
class Stage2Config:
    """Stage 2: a fresh softmax head on the frozen stage-1 embedding, trained on the pseudo labels."""

    enabled: bool = True
    rounds: int = 1             # tags: 2 (the first classifier's pseudo labels train a second one)
    iterations: int = 4000
    lr: float = 0.03            # the head's learning rate (SPML: 10x the base 3e-3); biases 2x
    warmup: int = 100           # linear warm-up iterations from warmup_factor x lr, then poly decay
    warmup_factor: float = 0.1
    batch_size: int = 0         # 0: data.batch_size


@dataclass
class EvalConfig:
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    save_predictions: bool = True
    max_images: int = 0         # 0: the whole split
    retrieval: bool = False     # also evaluate nearest-neighbour segment retrieval (SPML.md section 6)
    retrieval_k: int = 20
    retrieval_grid: int = 12
    retrieval_train_images: int = 0  # training images whose labelled segments form the memory (0: all)
    crf: bool = False           # refine predictions with the dense CRF (SPML: tags and boxes)


@dataclass
class SPMLConfig:
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"recipe": "toy_tags"}])
    name: str = "toy_tags"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pseudo: PseudoConfig = field(default_factory=PseudoConfig)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A setting outside its range: the message names the key, the value and what is expected."""


def _unknown_keys(node: Any, schema: Any, prefix: str = "") -> list[str]:
    """Keys of the composed ``node`` that the schema does not have. Hydra's ``+key=value`` adds a key
    even to a structured config (and Hydra suggests it for a misspelt one); such a key would be
    ignored silently, so it is refused like any unknown key."""
    from omegaconf import DictConfig

    out = []
    for key in node.keys():
        path = f"{prefix}{key}"
        if key not in schema:
            out.append(path)
            continue
        child, sub = node._get_node(key), schema._get_node(key)
        if isinstance(child, DictConfig) and isinstance(sub, DictConfig) and not child._is_none():
            out += _unknown_keys(child, sub, path + ".")
    return out


def validate(cfg: Any) -> None:
    """Check every setting's range before any work starts (a bad value otherwise surfaces as a
    tensor-shape error deep in training, or after it). Raises ``ConfigError``."""
    from spml_train.model import BACKBONES

    problems: list[str] = [f"{key}: not a setting (a misspelt key? `python -m spml_train --cfg job` lists them)"
                           for key in _unknown_keys(cfg, OmegaConf.structured(SPMLConfig)) if key != "defaults"]

    def need(ok: bool, key: str, expected: str) -> None:
        if not ok:
            problems.append(f"{key}={OmegaConf.select(cfg, key)!r}: expected {expected}")

    d, o, e = cfg.data, cfg.optim, cfg.eval
    need(d.kind in ("tags", "boxes", "points", "scribbles"), "data.kind", "tags, boxes, points or scribbles")
    need(d.crop >= 16, "data.crop", "at least 16 pixels")
    need(0 < d.scale_min <= d.scale_max, "data.scale_min", f"0 < scale_min <= scale_max ({d.scale_max})")
    need(d.batch_size >= 1, "data.batch_size", "at least 1")
    need(d.workers >= 0, "data.workers", "0 or more")
    need(d.dilate >= 0, "data.dilate", "0 or more")
    need(all(len(p) == 2 for p in d.flip_pairs), "data.flip_pairs", "pairs [a, b] of class indices")
    if d.shapes.num_train:
        # a toy recipe generates its data: given folders would be silently left unused
        need(not d.train and not d.val, "data.train" if d.train else "data.val",
             "unset while data.shapes.num_train > 0 (a toy recipe makes its own data): add "
             "data.shapes.num_train=0 to train on your folders")
        need(d.shapes.num_val >= 1, "data.shapes.num_val", "at least 1 validation image")
        need(d.shapes.num_classes >= 1, "data.shapes.num_classes", "at least 1")
    else:
        need(bool(d.train), "data.train", "the folder `weaklabels convert` wrote (or data.shapes.num_train > 0)")
        need(bool(d.val), "data.val", "the evaluation folder `weaklabels convert` wrote")
    need(cfg.model.backbone in BACKBONES, "model.backbone", f"one of {', '.join(BACKBONES)}")
    need(cfg.model.embedding in ("aspp", "psp"), "model.embedding", "aspp or psp")
    need(cfg.model.dim >= 2, "model.dim", "at least 2")
    need(cfg.segments.grid >= 1, "segments.grid", "at least 1")
    need(cfg.segments.iterations >= 1, "segments.iterations", "at least 1")
    need(cfg.segments.memory_iterations >= 0, "segments.memory_iterations", "0 or more")
    for t in ("c", "o", "v", "a"):
        need(cfg.loss[f"lambda_{t}"] >= 0, f"loss.lambda_{t}", "0 or more")
        need(cfg.loss[f"kappa_{t}"] > 0, f"loss.kappa_{t}", "a positive concentration")
    need(cfg.loss.chunk >= 0, "loss.chunk", "0 (automatic) or a positive number of pixels")
    need(o.lr > 0, "optim.lr", "a positive learning rate")
    need(o.iterations >= 1, "optim.iterations", "at least 1")
    need(o.warmup >= 0, "optim.warmup", "0 or more iterations")
    need(0 <= o.warmup_factor <= 1, "optim.warmup_factor", "in [0, 1]")
    need(o.momentum >= 0 and o.weight_decay >= 0, "optim.momentum", "momentum and weight_decay 0 or more")
    dev = str(cfg.run.device)
    need(dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:"), "run.device", "auto, cpu, cuda or cuda:N")
    need(cfg.run.checkpoint_every >= 1, "run.checkpoint_every", "at least 1")
    need(cfg.run.log_every >= 1, "run.log_every", "at least 1")
    need(cfg.run.threads >= 0, "run.threads", "0 (torch's default) or more")
    p = cfg.pseudo
    need(p.stride >= 1 and p.log2_steps >= 0, "pseudo.stride", "stride at least 1 (and log2_steps 0 or more)")
    need(len(p.crf_gaussian) == 2 and len(p.crf_bilateral) == 3, "pseudo.crf_bilateral",
         "crf_gaussian [weight, xy] and crf_bilateral [weight, xy, rgb]")
    need(p.max_images >= 0, "pseudo.max_images", "0 (all) or more")
    s2 = cfg.stage2
    need(s2.rounds >= 1, "stage2.rounds", "at least 1")
    need(s2.iterations >= 1, "stage2.iterations", "at least 1 (stage2.enabled=false skips stage 2)")
    need(s2.lr > 0, "stage2.lr", "a positive learning rate")
    need(s2.warmup >= 0, "stage2.warmup", "0 or more iterations")
    need(0 <= s2.warmup_factor <= 1, "stage2.warmup_factor", "in [0, 1]")
    need(s2.batch_size >= 0, "stage2.batch_size", "0 (data.batch_size) or more")
    need(len(e.scales) >= 1 and all(v > 0 for v in e.scales), "eval.scales", "one or more positive scales")
    need(e.max_images >= 0, "eval.max_images", "0 (all) or more")
    need(e.retrieval_k >= 1, "eval.retrieval_k", "at least 1 neighbour")
    need(e.retrieval_grid >= 1, "eval.retrieval_grid", "at least 1")
    need(d.cam.iterations >= 1 and d.cam.lr > 0, "data.cam.iterations", "at least 1 (with a positive data.cam.lr)")
    need(len(d.cam.scales) >= 1 and all(v > 0 for v in d.cam.scales), "data.cam.scales", "one or more positive scales")
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))


def recipes_dir() -> Path:
    """``recipes/``: packaged inside the wheel as ``spml_train/recipes``, or the repository's."""
    here = Path(__file__).resolve().parent
    for cand in (here / "recipes", here.parent / "recipes"):
        if cand.is_dir() and any(cand.glob("*.yaml")):
            return cand
    raise FileNotFoundError("the recipes/ folder is not installed next to spml_train")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml") if not p.stem.startswith("_"))


def load_recipe(name: str) -> Any:
    """A recipe with its ``base:`` chain merged in (the base first)."""
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown recipe {name!r}; recipes: {', '.join(recipe_names())}")
    node = OmegaConf.load(path)
    base = node.pop("base", None)
    if base is None:
        return node
    return OmegaConf.merge(load_recipe(str(base)), node)


def register() -> None:
    """Register the schema and every recipe (as the ``recipe`` group) with Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="spml", node=SPMLConfig)
    for name in recipe_names():
        cs.store(group="recipe", name=name, node=load_recipe(name), package="_global_")
