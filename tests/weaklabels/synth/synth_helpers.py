"""Helpers shared by the synthesis tests (on sys.path through this folder's conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from weaklabels.raster import rasterize
from weaklabels.sources.shapes import render_scene, shapes_vocabulary
from weaklabels.types import Sample, SemanticMask, Vocabulary

VOC = Vocabulary.voc()
NUM_REAL = 150


def mask_sample(mask: np.ndarray, image_id: str = "m", vocab: Vocabulary = VOC, **kw) -> Sample:
    return Sample(image_id, mask.shape[0], mask.shape[1], vocab, semantic=SemanticMask(mask), **kw)


def load_real(voc_masks: Path, n: int = NUM_REAL) -> list[Sample]:
    paths = sorted((voc_masks / "SegmentationClassAug").glob("*.png"))[:n]
    assert len(paths) == n
    return [mask_sample(np.array(Image.open(p)), p.stem) for p in paths]


def generated(seed: int, n: int) -> list[Sample]:
    vocab = shapes_vocabulary(5)
    return [mask_sample(render_scene(seed, i, height=48, width=64, vocabulary=vocab, boundary=True,
                                     max_objects=4).semantic, f"shape_{i}", vocab) for i in range(n)]


def assert_on_own_class(sample: Sample, kind: str, annotation) -> int:
    """Every labelled pixel of the rasterised annotation has its class in the full mask;
    returns the number of labelled pixels."""
    label = rasterize(sample.replace(**{kind: annotation}), kind)
    on = label < len(sample.vocabulary)
    m = sample.semantic.array
    bad = on & (m != label)
    assert not bad.any(), (sample.image_id, list(zip(label[bad][:5].tolist(), m[bad][:5].tolist())))
    return int(on.sum())
