"""Safe file access shared by every source: paths that stay inside the dataset
root, label PNGs read as indices (never colour-converted), images decoded with
the decompression-bomb guard turned into an error, XML parsed without entity
expansion.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from weaklabels.errors import CorruptFileError, MissingFileError, SourceError, UnsafePathError

# PIL warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse at the
# warning level: no real dataset image comes near 89 megapixels.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def resolve_inside(root: Path, relative: str, record: str) -> Path:
    """``root / relative``, refusing absolute paths and ``..`` that leave ``root``."""
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise UnsafePathError(f"{record}: file name {relative!r} is absolute; expected a path inside {root}")
    path = (root / relative).resolve()
    base = root.resolve()
    if path != base and base not in path.parents:
        raise UnsafePathError(f"{record}: file name {relative!r} escapes the dataset root {root}")
    return path


def open_image(path_or_bytes: Path | bytes, record: str, name: str | None = None) -> Image.Image:
    """Open and fully decode an image; ``name`` says what the bytes are in messages."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    name = name or ("image bytes" if isinstance(path_or_bytes, bytes) else str(path_or_bytes))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(src)
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise CorruptFileError(
                    f"{record}: {name} is {im.width}x{im.height} pixels, over the "
                    f"{MAX_IMAGE_PIXELS:,}-pixel decompression-bomb limit")
            im.load()
            return im
    except FileNotFoundError as err:
        raise MissingFileError(f"{record}: missing file {name}") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise CorruptFileError(f"{record}: {name} exceeds the decompression-bomb limit: {err}") from err
    except CorruptFileError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptFileError(f"{record}: cannot decode {name}: {err}") from err


def read_label_png(path: Path | bytes, record: str) -> np.ndarray:
    """A palette or grayscale label PNG as a ``(H, W) uint8`` index array.

    Palette images give their indices directly; RGB label images are refused
    because converting colours to classes needs a palette the caller chose.
    """
    im = open_image(path, record)
    if im.mode not in ("P", "L"):
        name = "mask bytes" if isinstance(path, bytes) else str(path)
        if im.mode in ("I", "I;16", "I;16B"):
            a = np.asarray(im)
            if a.size and a.max() > 255:
                raise CorruptFileError(f"{record}: {name} holds label values up to {a.max()}; expected 0..255")
            return a.astype(np.uint8)
        raise CorruptFileError(
            f"{record}: {name} is a mode {im.mode!r} image; expected a palette ('P') or "
            f"grayscale ('L') label PNG of class indices")
    return np.asarray(im, dtype=np.uint8)


def read_rgb(path: Path | bytes, record: str) -> np.ndarray:
    """An image decoded to ``(H, W, 3) uint8`` RGB."""
    return np.asarray(open_image(path, record).convert("RGB"))


def check_image(path: Path, record: str) -> tuple[int, int, bytes]:
    """Fully decode an image file (catching truncation and bombs); return ``(height, width, bytes)``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingFileError(f"{record}: missing image file {path}") from err
    im = open_image(data, record, str(path))
    return im.height, im.width, data


def check_size(what: str, got: tuple[int, int], want: tuple[int, int], path: Path | str, record: str, *,
               want_from: str = "the image is") -> None:
    """``got`` and ``want`` are (height, width); ``want_from`` says where ``want`` comes from."""
    if got != want:
        raise SourceError(f"{record}: {what} {path} is {got[1]}x{got[0]}; {want_from} {want[1]}x{want[0]}")


def parse_xml(path: Path, record: str):
    """Parse an XML file with defusedxml: entity declarations are refused, not expanded."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import parse
    from xml.etree.ElementTree import ParseError

    try:
        return parse(str(path)).getroot()
    except FileNotFoundError as err:
        raise MissingFileError(f"{record}: missing annotation file {path}") from err
    except DefusedXmlException as err:
        raise CorruptFileError(f"{record}: {path} declares XML entities ({type(err).__name__}); refused") from err
    except ParseError as err:
        raise CorruptFileError(f"{record}: {path} is not well-formed XML: {err}") from err
