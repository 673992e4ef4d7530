"""Dataset card (``README.md`` with YAML front matter) rendered from the
template in ``data_cards/``."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from weaklabels.types import Vocabulary

def protocol_text(kind: str) -> str:
    """The protocol's documentation, ``data_cards/protocols/KIND.md`` (one source for cards and docs)."""
    return (template_path().parent / "protocols" / f"{kind}.md").read_text().strip()


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
        "protocol": protocol_text(options.kind) + (
            "\n\nThese labels are human annotations read with `--from-annotations`." if options.given else ""),
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
