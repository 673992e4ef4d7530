"""Weak-label synthesis: a fully annotated ``Sample`` in, weak annotations out.

Protocols (each module documents its own):

* ``tags``      foreground classes present
* ``boxes``     tight box per instance / connected component
* ``points``    clicks inside objects (center, random, human-like)
* ``scribbles`` strokes along objects' medial paths

All are pure functions of the sample and a seed; randomness is keyed by
``(seed, image id, class, object)`` (``seeding.rng_for``), so output never
depends on the order of items or on the number of worker processes. Every
labelled pixel lies on a pixel of its own class in the source mask.
"""

from __future__ import annotations

from importlib import import_module

from weaklabels.errors import SchemaError
from weaklabels.synth.seeding import rng_for
from weaklabels.synth.tags import synthesize_tags
from weaklabels.types import WEAK_KINDS, Sample

__all__ = ["rng_for", "synthesize", "synthesize_boxes", "synthesize_points", "synthesize_scribbles",
           "synthesize_tags"]


def __getattr__(name: str):
    # Protocol modules import scipy / scikit-image / OpenCV (~0.5 s): load them on first use, so
    # a tags conversion (and each worker process) does not pay for them.
    if name in ("synthesize_boxes", "synthesize_points", "synthesize_scribbles"):
        return getattr(import_module(f"weaklabels.synth.{name.split('_')[1]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def synthesize(sample: Sample, kind: str, *, seed: int = 0, given: bool = False, **opts) -> Sample:
    """Return ``sample`` carrying synthesized ``kind`` annotations and its tags.

    ``given=True`` keeps the sample's own (human) ``kind`` annotation instead of
    synthesizing one. Annotations of other weak kinds are dropped so the result
    holds exactly one kind of weak label; full masks are kept (the pipeline
    decides what to store).
    """
    if kind not in WEAK_KINDS:
        raise SchemaError(f"unknown weak-label kind {kind!r}; expected one of {', '.join(WEAK_KINDS)}")
    cleared = sample.replace(**{k: None for k in WEAK_KINDS if k not in ("tags", kind)})
    if given:
        if getattr(sample, kind) is None:
            raise SchemaError(f"image {sample.image_id!r}: no given {kind} annotation")
        return cleared.replace(tags=synthesize_tags(cleared))
    if kind == "tags":
        return cleared.replace(tags=synthesize_tags(sample, **opts))
    tags = synthesize_tags(sample)
    protocol = import_module(f"weaklabels.synth.{kind}")
    if kind == "boxes":
        return cleared.replace(boxes=protocol.synthesize_boxes(sample, **opts), tags=tags)
    if kind == "points":
        return cleared.replace(points=protocol.synthesize_points(sample, seed=seed, **opts), tags=tags)
    return cleared.replace(scribbles=protocol.synthesize_scribbles(sample, seed=seed, **opts), tags=tags)
