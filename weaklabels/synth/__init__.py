"""Weak-label synthesis: a fully annotated ``Sample`` in, weak annotations out.

Each protocol is a pure function of the sample and an ``rng`` derived from
``(seed, image id)`` by ``rng_for``, so its output never depends on the order
of items or on the number of worker processes.
"""

from __future__ import annotations

import hashlib

import numpy as np

from weaklabels.errors import SchemaError
from weaklabels.synth.boxes import synthesize_boxes
from weaklabels.synth.tags import synthesize_tags
from weaklabels.types import WEAK_KINDS, Sample

__all__ = ["rng_for", "synthesize", "synthesize_boxes", "synthesize_tags", "SYNTHESIZERS"]


def rng_for(seed: int, image_id: str, *keys: int) -> np.random.Generator:
    """A generator keyed by ``(seed, image id, *keys)``; stable across runs and machines."""
    digest = hashlib.blake2b(image_id.encode(), digest_size=8).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest, "little"), *map(int, keys)])


def _tags(sample: Sample, rng: np.random.Generator, **opts) -> Sample:
    return sample.replace(tags=synthesize_tags(sample, **opts))


def _boxes(sample: Sample, rng: np.random.Generator, **opts) -> Sample:
    boxes = synthesize_boxes(sample, **opts)
    return sample.replace(boxes=boxes, tags=synthesize_tags(sample))


SYNTHESIZERS = {"tags": _tags, "boxes": _boxes}


def synthesize(sample: Sample, kind: str, *, seed: int = 0, **opts) -> Sample:
    """Return ``sample`` carrying synthesized ``kind`` annotations (and its tags).

    Annotations of other weak kinds are dropped so the result holds exactly one
    kind of weak label; the full masks are kept for evaluation splits.
    """
    if kind not in WEAK_KINDS:
        raise SchemaError(f"unknown weak-label kind {kind!r}; expected one of {', '.join(WEAK_KINDS)}")
    if kind not in SYNTHESIZERS:
        raise SchemaError(f"synthesis of {kind!r} is not available in this version; "
                          f"available: {', '.join(SYNTHESIZERS)}")
    rng = rng_for(seed, sample.image_id)
    cleared = {k: None for k in WEAK_KINDS if k not in ("tags", kind)}
    return SYNTHESIZERS[kind](sample.replace(**cleared), rng, **opts)
