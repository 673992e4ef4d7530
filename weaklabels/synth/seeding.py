"""Seeds: every random choice is drawn from a generator keyed by
``(seed, image id, *keys)`` (keys: class, object index), so results do not
depend on the order of items, of objects, or on the number of processes."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, image_id: str, *keys: int) -> np.random.Generator:
    """A generator keyed by ``(seed, image id, *keys)``; stable across runs and machines."""
    digest = hashlib.blake2b(image_id.encode(), digest_size=8).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest, "little"), *map(int, keys)])
