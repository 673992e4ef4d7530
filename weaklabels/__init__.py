"""weaklabels: typed weak annotations for semantic segmentation.

Sources (VOC, COCO, HuggingFace, procedural shapes) yield ``Sample`` values;
``synth`` derives weak labels from full masks; ``raster`` turns them into
label maps; ``writers`` store them as HuggingFace parquet or VOC-style PNGs.
"""

__version__ = "0.1.0"

from weaklabels.errors import WeaklabelsError  # noqa: E402
from weaklabels.types import (  # noqa: E402
    IGNORE, UNLABELLED, Boxes, ImageRef, ImageTags, InstanceMasks, Points, Sample, Scribbles,
    SemanticMask, Vocabulary,
)

__all__ = [
    "__version__", "WeaklabelsError", "IGNORE", "UNLABELLED", "Boxes", "ImageRef", "ImageTags",
    "InstanceMasks", "Points", "Sample", "Scribbles", "SemanticMask", "Vocabulary",
]
