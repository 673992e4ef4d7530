import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synth_helpers import load_real  # noqa: E402


@pytest.fixture(scope="session")
def real_samples(voc_masks):
    """150 real VOC masks as samples (skipped with a reason when the shared data is absent)."""
    return load_real(voc_masks)
