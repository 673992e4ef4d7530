"""Writers: converted items out, as a HuggingFace parquet dataset (``hf``,
the default) or VOC-style PNGs with an SPML list file (``voc``).

Both write shards into the output's ``.partial/`` folder first and move them
into place only when the whole run has finished, so an interrupted run never
looks complete and can be resumed shard by shard.
"""

from weaklabels.writers.base import Converted, ShardWriter
from weaklabels.writers.hf import HFWriter, hf_features
from weaklabels.writers.voc import VOCWriter

WRITERS = {"hf": HFWriter, "voc": VOCWriter}

__all__ = ["Converted", "ShardWriter", "HFWriter", "VOCWriter", "WRITERS", "hf_features"]
