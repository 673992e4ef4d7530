"""spml_train: the reference SPML trainer (pixel-to-segment contrastive
learning with SegSort+), consuming datasets written by ``weaklabels convert``.

Not implemented yet: the trainer is tracked as its own issue. This package
exists so the layout and packaging are in place; importing it gives nothing
else.
"""
