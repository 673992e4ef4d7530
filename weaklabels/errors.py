"""Errors raised by weaklabels.

Every error is a ``WeaklabelsError`` and also the builtin a caller would catch
for the same failure (``ValueError``, ``FileNotFoundError``, ...). Messages name
the file or record at fault, the value seen, and what was expected.
"""

from __future__ import annotations


class WeaklabelsError(Exception):
    """Base class of every error this library raises on purpose."""


class SchemaError(WeaklabelsError, ValueError):
    """An annotation, vocabulary or sample holds a value outside its contract."""


class SourceError(WeaklabelsError, ValueError):
    """A dataset file could be read but its content is invalid (bad record, size mismatch, ...)."""


class CorruptFileError(SourceError):
    """A file exists but cannot be decoded (truncated image, malformed XML/JSON, bomb)."""


class MissingFileError(WeaklabelsError, FileNotFoundError):
    """A file the dataset refers to does not exist."""


class UnsafePathError(WeaklabelsError, PermissionError):
    """A path in an annotation escapes the dataset root."""


class OutputExistsError(WeaklabelsError, FileExistsError):
    """The output folder is refused: not empty without ``overwrite=True`` (``--overwrite``), or
    overlapping an input."""


class MissingDependencyError(WeaklabelsError, ImportError):
    """An optional backend is not installed; the message says what to install."""
