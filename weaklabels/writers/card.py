"""Dataset card (``README.md`` with YAML front matter) rendered from the
template in ``data_cards/``."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from weaklabels.types import Vocabulary

PROTOCOLS = {
    "tags": "Image tags: a foreground class is a tag when the full mask holds at least `min_pixels` "
            "of its pixels. Every pixel of `weak_label` is unlabelled.",
    "boxes": "Boxes: the tight box of each instance (instance masks), or of each connected component "
             "(`connectivity`) of a class with at least `min_area` pixels when only a class mask exists; "
             "crowd regions and void are excluded. In `weak_label` the pixels outside every box are "
             "background, inside a box unlabelled (its candidate classes are the covering boxes' classes "
             "plus background), inside a crowd box ignore.",
    "points": "Points: labelled pixels at the given points (disc of `point_radius`).",
    "scribbles": "Scribbles: labelled polylines drawn with their width.",
}


def template_path() -> Path:
    """The card template: packaged inside the wheel, or the repository's ``data_cards/``."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "data_cards" / "dataset_card.md", here.parent / "data_cards" / "dataset_card.md"):
        if cand.is_file():
            return cand
    raise FileNotFoundError("dataset card template data_cards/dataset_card.md is not installed")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_card(*, vocabulary: Vocabulary, options, summary, data_files: dict[str, str], sources: dict,
                num_errors: int, command: str | None, license: str = "other") -> str:
    from weaklabels import __version__

    tot = max(summary.total_pixels, 1)
    src = ", ".join(f"{s['reader']} `{s.get('root') or s.get('annotations')}` split `{split}`"
                    for split, s in sources.items())
    sids = vocabulary.source_ids or tuple(range(len(vocabulary)))
    opts = {k: v for k, v in options.synth_options().items()}
    values = {
        "license": license,
        "kind": options.kind,
        "pretty_name": f"weak {options.kind} ({', '.join(sources)})",
        "version": __version__,
        "source_summary": src,
        "data_files_yaml": "\n".join(f"  - split: {s}\n    path: {p}" for s, p in data_files.items()),
        "data_files_python": ", ".join(f'"{s}": "{p}"' for s, p in data_files.items()),
        "protocol": PROTOCOLS[options.kind],
        "options_json": json.dumps(opts),
        "seed": options.seed,
        "unlabelled": vocabulary.unlabelled,
        "ignore": vocabulary.ignore,
        "background": vocabulary.background,
        "vocabulary_table": "\n".join(f"| {i} | {_cell(n)} | {'' if s is None else s} |"
                                      for i, (n, s) in enumerate(zip(vocabulary.names, sids))),
        "num_images": f"{summary.num_images:,}",
        "num_errors": f"{num_errors:,}",
        "stats_table": "\n".join(
            f"| {_cell(n)} | {int(summary.images[i]):,} | {int(summary.annotations[i]):,} | "
            f"{100 * summary.labelled_pixels[i] / tot:.3f}% |"
            for i, n in enumerate(vocabulary.names) if summary.images[i] or summary.annotations[i]),
        "source_json": _cell(json.dumps(sources)),
        "command": _cell(command or "(Python API)"),
    }
    return Template(template_path().read_text()).substitute(values)
