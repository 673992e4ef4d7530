"""spml_train: the reference SPML trainer (pixel-to-segment contrastive learning with
SegSort+), consuming datasets written by ``weaklabels convert``.

``python -m spml_train recipe=NAME key=value ...`` (see ``__main__``). The step runs
dataset (``data``) -> network (``model``) -> spherical k-means segments and
prototypes (``segments``, relations from ``weaklabels.segsets``) -> SegSort+
(``loss``) -> optimiser, checkpoints and logs (``engine``; data parallelism in
``distributed``) -> mIoU (``evaluate``).
"""
