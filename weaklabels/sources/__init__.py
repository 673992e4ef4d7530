"""Sources: dataset files in, ``Sample`` values out, one item at a time."""

from weaklabels.sources.base import Source, iter_samples
from weaklabels.sources.coco import COCOSource, read_coco
from weaklabels.sources.hf import HFSource, read_hf
from weaklabels.sources.voc import VOCSource, read_voc

__all__ = ["Source", "iter_samples", "COCOSource", "read_coco", "HFSource", "read_hf", "VOCSource", "read_voc"]
