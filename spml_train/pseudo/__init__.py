"""Pseudo-label stages: class activation maps for tags and boxes (``cam``)."""
