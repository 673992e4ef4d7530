"""Dataset card (``README.md`` with YAML front matter) rendered from the
template in ``data_cards/``."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

from weaklabels.types import Vocabulary

# What each human-annotation reader (``describe()["annotations"]``) does with its files.
HUMAN_READERS = {
    "whats_the_point": "What's-the-Point click JSON (Bearman et al. 2016): each click labels the pixel it "
                       "falls on with its class; clicks of rank above `max_rank` (when set) are left out, "
                       "clicks outside the image are dropped, clicks on void or on another class of the full "
                       "mask are kept as clicked; dropped and doubtful clicks are reported in `warnings.json`.",
    "scribblesup": "ScribbleSup XML (Lin et al. 2016): each polygon's vertices form a stroke of its tag's "
                   "class (`bg` / `background` tags: background), drawn `width` pixels wide; vertices "
                   "outside the image are clamped to it and reported in `warnings.json`.",
    "voc_xml": "PASCAL VOC XML boxes (`{image_id}.xml`) with their difficult and truncated flags; boxes "
               "reaching past the image are clipped to it and reported in `warnings.json`.",
    "coco_bbox": "COCO instances JSON `bbox` fields, matched to images by id or file name stem and clipped "
                 "to the image; crowd boxes are kept as ignore (`crowd`) boxes.",
}
_FILE_KEYS = ("paths", "path", "folder")


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


def weak_labels_text(options, sources: dict, num_warnings: int) -> str:
    """The card's "Weak labels" section: the synthesis protocol and the options it ran with or,
    for human annotations (``options.given``), what the reader did: the protocol's options were
    never used there."""
    if not options.given:
        return (f"{protocol_text(options.kind)}\n\n"
                f"Protocol options: `{json.dumps(options.synth_options())}` (seed `{options.seed}`). Any "
                f"randomness is keyed by\n(seed, image id, class, object), so a rerun gives the same labels "
                f"whatever the order of the\nimages or the number of processes.")
    warned = f"{num_warnings:,} warning(s) about the input are listed in `warnings.json`."
    humans = []
    for s in sources.values():
        if s.get("human") is not None and s["human"] not in humans:
            humans.append(s["human"])
    if not humans:  # a reader whose source holds human labels itself (DensePose points)
        readers = ", ".join(sorted({str(s.get("reader")) for s in sources.values()}))
        return (f"These **{options.kind}** are the source's own human annotations (reader `{readers}`), "
                f"not synthesized: no protocol option applies. {warned}")
    parts = [f"These **{options.kind}** are human annotations read with `--from-annotations`, not "
             f"synthesized: the synthesis protocol and its options do not apply."]
    for h in humans:
        name = h.get("annotations")
        files = [f for k in _FILE_KEYS if k in h for f in (h[k] if isinstance(h[k], list) else [h[k]])]
        opts = {k: v for k, v in h.items() if k != "annotations" and k not in _FILE_KEYS}
        parts.append(f"- Reader `{name}`: {HUMAN_READERS.get(name, 'human annotations.')}\n"
                     f"- Files: {', '.join(f'`{f}`' for f in files) or '(none)'}\n"
                     f"- Reader options: `{json.dumps(opts)}`")
    if options.kind == "points":
        parts.append(f"Points are drawn with radius `{options.point_radius}` in `weak_label`.")
    parts.append(warned)
    return "\n\n".join(parts)


def render_card(*, vocabulary: Vocabulary, options, summary, data_files: dict[str, str], sources: dict,
                num_errors: int, command: str | None, license: str = "other", num_warnings: int = 0) -> str:
    from weaklabels import __version__

    tot = max(summary.total_pixels, 1)
    src = ", ".join(f"{s['reader']} `{s.get('root') or s.get('annotations')}` split `{split}`"
                    for split, s in sources.items())
    sids = vocabulary.source_ids or tuple(range(len(vocabulary)))
    values = {
        "license": license,
        "kind": options.kind,
        "pretty_name": f"weak {options.kind} ({', '.join(sources)})",
        "version": __version__,
        "source_summary": src,
        "data_files_yaml": "\n".join(f"  - split: {s}\n    path: {p}" for s, p in data_files.items()),
        "data_files_python": ", ".join(f'"{s}": "{p}"' for s, p in data_files.items()),
        "weak_labels": weak_labels_text(options, sources, num_warnings),
        "unlabelled": vocabulary.unlabelled,
        "ignore": vocabulary.ignore,
        "background": vocabulary.background,
        "vocabulary_table": "\n".join(f"| {i} | {_cell(n)} | {'' if s is None else s} |"
                                      for i, (n, s) in enumerate(zip(vocabulary.names, sids))),
        "num_images": f"{summary.num_images:,}",
        "num_errors": f"{num_errors:,}",
        "num_warnings": f"{num_warnings:,}",
        "stats_table": "\n".join(
            f"| {_cell(n)} | {int(summary.images[i]):,} | {int(summary.annotations[i]):,} | "
            f"{100 * summary.labelled_pixels[i] / tot:.3f}% |"
            for i, n in enumerate(vocabulary.names) if summary.images[i] or summary.annotations[i]),
        "source_json": _cell(json.dumps(sources)),
        "command": _cell(command or "(Python API)"),
    }
    return Template(template_path().read_text()).substitute(values)
