"""``weaklabels`` command line.

    weaklabels convert {voc,coco,hf,densepose} --to {tags,boxes,points,scribbles} [--root R] [--out DIR] ...
    weaklabels report {voc,coco,hf} --to KIND [--clicks FILE] [--limit N] ...
    weaklabels show DIR [--index I | --id ID] [--out overlay.png]
    weaklabels stats DIR [--csv FILE]
    weaklabels sample shapes --out DIR [--num-images N] [--seed S]

Exit codes:
    0  success
    1  unexpected internal error (a bug: please report it)
    2  bad command line
    3  finished, but some items were skipped (--on-error skip; see errors.json)
    4  input data error (the message names the file and item); nothing was completed
    5  output folder refused (not empty without --overwrite, or the same as, inside or holding an input)
    130 interrupted; run the same command again to resume
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np

from weaklabels import __version__
from weaklabels.errors import MissingFileError, OutputExistsError, SchemaError, WeaklabelsError
from weaklabels.types import WEAK_KINDS

EXIT_OK, EXIT_BUG, EXIT_USAGE, EXIT_SKIPPED, EXIT_DATA, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

log = logging.getLogger("weaklabels")


def _progress_bar(total: int, quiet: bool, desc: str):
    """A tqdm bar on stderr, or a no-op when quiet or stderr is not a terminal."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True)


# --------------------------------------------------------------------------- convert


def _sources(args) -> dict:
    from weaklabels.sources import read_coco, read_hf, read_voc
    from weaklabels.sources.bundled import bundled_coco, bundled_voc

    if args.split is None:  # COCO: the instances file's name says the split (instances_val2017 -> val2017)
        args.split = Path(args.annotations).stem.replace("instances_", "") if (
            args.dataset in ("coco", "densepose") and args.annotations) else "train"
    splits = [s for s in args.split.split(",") if s]
    if args.dataset == "densepose":
        from weaklabels.sources.densepose import read_densepose

        if args.annotations is None:
            raise SchemaError("densepose: give --annotations FILE (a DensePose-COCO JSON)")
        if len(splits) > 1:
            raise SchemaError("densepose: one --annotations file holds one split; convert splits one at a time")
        return {splits[0]: read_densepose(args.annotations, args.root, split=splits[0])}
    if args.dataset == "voc":
        root = args.root or bundled_voc()
        return {s: read_voc(root, s, masks=args.masks) for s in splits}
    if args.dataset == "coco":
        out = {}
        for s in splits:
            if args.annotations is None:
                if args.root is not None:
                    raise SchemaError("coco: --root names the image folder; also give --annotations FILE")
                ann, root = bundled_coco(s)
                if not ann.exists():
                    raise MissingFileError(f"the bundled sample has no COCO split {s!r}; it has train and val")
                if getattr(args, "masks_only", False):  # report has no such option
                    root = None
            else:
                ann, root = Path(args.annotations), args.root
            if args.masks not in ("auto", "none"):
                raise SchemaError(f"coco: --masks {args.masks} names a VOC folder; expected auto or none "
                                  f"(none: the bbox fields alone)")
            out[s] = read_coco(ann, root, split=s, masks=args.masks)
            if root is None and not out[s].with_masks:  # as the VOC reader refuses a devkit without both
                without = "--masks-only reads" if getattr(args, "masks_only", False) else "without --root there are"
                raise SchemaError(f"coco: {ann} gives no masks (--masks none, or no annotation has a "
                                  f"segmentation) and {without} no images: nothing but boxes would "
                                  f"be written; give --root IMAGE_FOLDER")
        if args.annotations is not None and len(splits) > 1:
            raise SchemaError("coco: one --annotations file holds one split; convert splits one at a time")
        return out
    if args.root is None:
        raise SchemaError("hf: --root is required (a hub id such as user/name, or a local path)")
    names = args.class_names.split(",") if args.class_names else None
    return {s: read_hf(args.root, s, image_column=args.image_column, mask_column=args.mask_column,
                       instance_column=args.instance_column, id_column=args.id_column,
                       class_names=names, classes_column=args.classes_column) for s in splits}


def _check_images(args) -> None:
    """An annotations file without ``--root`` would give items with no image: refuse it unless
    ``--masks-only`` says so (``report`` reads masks only and needs no images)."""
    if args.dataset not in ("coco", "densepose"):
        if args.masks_only:
            raise SchemaError(f"{args.dataset}: --masks-only is for coco and densepose (voc is masks-only "
                              f"when its root has no JPEGImages, hf when the image column is empty)")
        return
    if args.masks_only and args.root is not None:
        raise SchemaError(f"{args.dataset}: --masks-only reads no images; drop --root {args.root} or --masks-only")
    if args.annotations is not None and args.root is None and not args.masks_only:
        raise SchemaError(f"{args.dataset}: --annotations {args.annotations} without --root would write items "
                          f"with no images; give --root IMAGE_FOLDER (the folder the records' file_name is "
                          f"relative to), or --masks-only to convert the masks without images on purpose")


def cmd_convert(args) -> int:
    from weaklabels.convert import ConvertOptions, convert
    from weaklabels.sources.human import Annotated, human_annotations

    options = _options(args, ConvertOptions)
    _check_images(args)
    sources = _sources(args)
    vocabulary = next(iter(sources.values())).vocabulary
    if vocabulary.background is None:  # legitimate (a dataset without background), but easy to get by mistake
        log.warning("the vocabulary has no background class (class 0 is %r): every class gets tags, boxes, "
                    "points or strokes as an object; name the background class 'background' if it has one",
                    vocabulary.names[0])
    if args.dataset == "densepose" and args.to != "points":
        raise SchemaError("densepose holds part points: use --to points")
    if args.from_annotations is not None:
        human = human_annotations(args.to, args.from_annotations, max_rank=args.max_rank, width=args.width)
        sources = {k: Annotated(v, human) for k, v in sources.items()}
    total = sum(len(s) for s in sources.values())
    out = Path(args.out) if args.out else Path(f"weaklabels-{args.dataset}-{args.to}")
    bar = _progress_bar(total, args.quiet, f"{args.dataset} -> {args.to}")
    command = "weaklabels " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        result = convert(sources, out, options, num_proc=args.num_proc, on_error=args.on_error,
                         overwrite=args.overwrite, progress=bar.update if bar else None, command=command)
    finally:
        if bar:
            bar.close()
    return _report_convert(args, result, out, total)


def _options(args, ConvertOptions):
    """ConvertOptions from the protocol arguments shared by convert and report."""
    if args.dataset == "hf" and (args.quiet or not sys.stderr.isatty()):
        import datasets

        datasets.disable_progress_bars()
    return ConvertOptions(
        kind=args.to, seed=args.seed, format=getattr(args, "format", "hf"), gt=getattr(args, "gt", "auto"),
        shard_size=getattr(args, "shard_size", 256), min_pixels=args.min_pixels, min_area=args.min_area,
        connectivity=args.connectivity, point_radius=args.point_radius, points_per=args.per, points_k=args.k,
        placement=args.placement, background=args.background, width=args.width, length_ratio=args.length_ratio,
        given=args.from_annotations is not None or args.dataset == "densepose",
        regions=getattr(args, "regions", "none"))


def _report_convert(args, result, out: Path, total: int) -> int:
    if not args.quiet:
        print(result.summary.table(result.vocabulary))
        what = "masks-only items" if getattr(args, "masks_only", False) else "images"
        print(f"wrote {result.summary.num_images:,} {what} to {out} in {result.seconds:.1f} s"
              + (f" (resumed {result.resumed_shards} shard(s))" if result.resumed_shards else ""))
    if result.warnings and not args.quiet:
        print(f"{len(result.warnings):,} warning(s) about the input, e.g. {result.warnings[0]['image_id']}: "
              f"{result.warnings[0]['message']} (all: {out / 'warnings.json'})", file=sys.stderr)
    item_errors = [e for e in result.errors if e.get("index") is not None]
    records = len(result.errors) - len(item_errors)
    if records:
        print(f"{records:,} annotation record(s) refer to no image and were left out "
              f"(details: {out / 'errors.json'})", file=sys.stderr)
    if item_errors:
        print(f"skipped {len(item_errors):,} of {total:,} (details: {out / 'errors.json'}):", file=sys.stderr)
        for line in _skip_reasons(item_errors):
            print(f"  {line}", file=sys.stderr)
    if result.errors:
        return EXIT_SKIPPED
    return EXIT_OK


def _reason(error: dict, anonymise: bool = True) -> str:
    """``error``'s message without its leading record (``image 'ID'``; a path in parentheses after it
    is kept, a row number is not) and, with ``anonymise``, with the id in file names and quotes
    replaced by ``ID`` (and an annotation's number by ``N``): items that failed alike read alike."""
    iid, text = str(error.get("image_id")), error["message"]
    m = re.match(rf"image {re.escape(repr(iid))}(?: \((.*?)\))?:? ", text)
    if m:
        inner = m.group(1)
        text = text[m.end():] if not inner or re.fullmatch(r"row \d+", inner) else f"{inner}: {text[m.end():]}"
    if not anonymise:
        return text
    text = re.sub(r"\bannotation \d+", "annotation N", text)  # COCO records within the image
    return re.sub(rf"(?<=[/\\'\"]){re.escape(iid)}(?![\w-])", "ID", text)


def _skip_reasons(errors: list[dict], *, top: int = 3, width: int = 160) -> list[str]:
    """One line per kind of failure, most frequent first: its count, its message (whole, or cut at a
    word boundary) and the first ids."""
    groups: dict[str, list[dict]] = {}
    for e in errors:
        groups.setdefault(_reason(e), []).append(e)
    ranked = sorted(groups.items(), key=lambda g: -len(g[1]))
    lines = []
    for reason, group in ranked[:top]:
        if len(group) == 1:  # nothing to group: the message as it names its own files
            reason = _reason(group[0], anonymise=False)
        ids = [str(e.get("image_id")) for e in group]
        some = ("image " if len(ids) == 1 else "images ") + ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        lines.append(f"{len(ids):,} x {textwrap.shorten(reason, width, placeholder=' ...')} ({some})")
    if len(ranked) > top:
        lines.append(f"and {len(ranked) - top:,} other kind(s) of failure")
    return lines


def cmd_report(args) -> int:
    from weaklabels.convert import ConvertOptions
    from weaklabels.fidelity import measure, table
    from weaklabels.sources.clicks import ClickAnnotations
    from weaklabels.sources.human import human_annotations
    from weaklabels.synth import synthesize

    options = _options(args, ConvertOptions)
    split, source = next(iter(_sources(args).items()))
    n = len(source) if args.limit is None else min(args.limit, len(source))
    human = None if args.from_annotations is None else human_annotations(
        args.to, args.from_annotations, max_rank=args.max_rank, width=args.width)
    clicks = None if args.clicks is None else ClickAnnotations(args.clicks.split(","))

    def weak_of(s):
        if human is not None:
            return synthesize(human.attach(s), args.to, given=True)
        return synthesize(s, args.to, seed=options.seed, **options.synth_options())

    bar = _progress_bar(n, args.quiet, f"report {args.to}")

    def samples():
        for i in range(n):
            yield source[i]
            if bar:
                bar.update(1)

    from weaklabels.convert import weak_label

    f = measure(samples(), weak_of, args.to, None if clicks is None else clicks.attach,
                lambda s, w: weak_label(s, w, options))
    if bar:
        bar.close()
    name = f"{args.to} ({'human' if human else 'synth'})"
    d = f.to_dict()
    print(table({name: d}))
    print(json.dumps({"protocol": name, "split": split, **d}))
    return EXIT_OK


# --------------------------------------------------------------------------- show / stats


def _open_converted(path: Path):
    from weaklabels.types import Vocabulary

    vocab_file = path / "vocabulary.json"
    if not vocab_file.is_file():
        raise MissingFileError(f"{path} is not a converted dataset (no vocabulary.json)")
    return Vocabulary.load(vocab_file)


def cmd_show(args) -> int:
    import pyarrow.parquet as pq
    from PIL import Image

    from weaklabels.sources.files import read_label_png, read_rgb

    path = Path(args.dataset)
    voc = _open_converted(path)
    splits = sorted({f.name.split("-")[0] for f in (path / "data").glob("*.parquet")})
    if not splits:
        raise MissingFileError(f"{path}: no parquet shards in data/ (show reads the default hf format)")
    split = args.split or ("train" if "train" in splits else splits[0])
    files = sorted((path / "data").glob(f"{split}-*.parquet"))
    if not files:
        raise MissingFileError(f"{path}: no parquet shard for split {split!r}; splits: {', '.join(splits)}")
    row = None
    seen = 0
    for f in files:
        t = pq.read_table(f)
        ids = t.column("image_id").to_pylist()
        if args.id is not None and args.id in ids:
            row = t.slice(ids.index(args.id), 1).to_pylist()[0]
            break
        if args.id is None and args.index < seen + len(ids):
            row = t.slice(args.index - seen, 1).to_pylist()[0]
            break
        seen += len(ids)
    if row is None and args.id is None:
        raise SchemaError(f"{path}: no item --index {args.index} in split {split!r}; it has {seen:,} items "
                          f"(0..{seen - 1})")
    if row is None:
        elsewhere = [s for s in splits if s != split and any(
            args.id in pq.read_table(f, columns=["image_id"]).column("image_id").to_pylist()
            for f in sorted((path / "data").glob(f"{s}-*.parquet")))]
        hint = (f"; it is in split {elsewhere[0]!r} (--split {elsewhere[0]})" if elsewhere
                else f"; no split has it ({', '.join(splits)})")
        raise SchemaError(f"{path}: no item {args.id!r} in split {split!r}{hint}")
    rec = f"image {row['image_id']!r}"
    weak = read_label_png(row["weak_label"]["bytes"], rec)
    h, w = weak.shape
    base = read_rgb(row["image"]["bytes"], rec) if row.get("image") else np.full((h, w, 3), 128, np.uint8)
    pal = np.asarray(voc.palette(), np.uint8).reshape(256, 3)
    colour = pal[weak]
    alpha = np.where((weak < len(voc))[..., None], 0.6, 0.0)
    alpha[weak == voc.ignore] = 0.3
    over = (base * (1 - alpha) + colour * alpha).astype(np.uint8)
    im = Image.fromarray(over)
    from PIL import ImageDraw

    d = ImageDraw.Draw(im)
    for b in row["boxes"]:
        if b["crowd"]:  # ignore regions are drawn as such by the weak label, not as objects
            continue
        d.rectangle((b["x0"], b["y0"], b["x1"] - 1, b["y1"] - 1), outline=tuple(int(v) for v in pal[b["label"]]))
        d.text((b["x0"] + 2, b["y0"] + 1), voc.names[b["label"]], fill=(255, 255, 255))
    for p in row["points"]:
        x, y = p["x"], p["y"]
        d.ellipse((x - 3, y - 3, x + 3, y + 3), outline=(255, 255, 255), fill=tuple(int(v) for v in pal[p["label"]]))
    tags = ", ".join(voc.names[t] for t in row["tags"]) or "(none)"
    d.text((4, 4), f"{row['image_id']}: {tags}", fill=(255, 255, 255))
    out = Path(args.out or f"{row['image_id']}_overlay.png")
    im.save(out)
    print(out)
    return EXIT_OK


def cmd_stats(args) -> int:
    from weaklabels.stats import Summary

    path = Path(args.dataset)
    voc = _open_converted(path)
    sfile = path / "summary.json"
    if not sfile.is_file():
        raise MissingFileError(f"{path}: no summary.json; was the conversion completed?")
    summary = Summary.from_dict(json.loads(sfile.read_text()))
    print(summary.table(voc))
    csv_path = Path(args.csv) if args.csv else path / "stats.csv"
    summary.write_csv(csv_path, voc)
    print(f"wrote {csv_path}")
    return EXIT_OK


def cmd_sample(args) -> int:
    from weaklabels.sources.shapes import shapes_vocabulary, write_shapes
    from weaklabels.types import Vocabulary

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise OutputExistsError(f"--out {out} is not empty; pass --overwrite to write into it")
    voc = Vocabulary.voc() if args.classes == "voc" else shapes_vocabulary(int(args.classes))
    bar = _progress_bar(args.num_images, args.quiet, "shapes")
    root = write_shapes(out, args.num_images, args.seed, height=args.height, width=args.width,
                        vocabulary=voc, boundary=args.boundary,
                        on_progress=(lambda n: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    if not args.quiet:
        print(f"wrote {args.num_images} scenes to {root} (COCO JSON in {out / 'annotations'})")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} is below the minimum {low}")
        return v
    return parse


def _float_in(low: float, high: float | None = None, *, open_low: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v < low or (open_low and v == low) or (high is not None and v > high):
            rng = f"{'(' if open_low else '['}{low}, {high if high is not None else 'inf'}]"
            raise argparse.ArgumentTypeError(f"{v} is outside {rng}")
        return v
    return parse


def _regions(text: str) -> str:
    if text in ("none", "felzenszwalb", "slic") or Path(text).is_dir():
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is neither none, felzenszwalb, slic nor a folder of region PNGs")


def _classes(text: str) -> str:
    if text == "voc" or (text.isdigit() and int(text) >= 1):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected a number of classes (>= 1) or 'voc'")



class _Unset:
    """The default of a protocol option, told apart from the same value typed on the command line
    (argparse applies ``type`` to string defaults only: this object passes through as is)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


# The kinds (--to) each protocol option applies to: any other kind would silently ignore it.
KIND_OPTIONS = {
    "min_pixels": ("--min-pixels", ("tags",)),
    "connectivity": ("--connectivity", ("boxes",)),
    "min_area": ("--min-area", ("boxes", "points", "scribbles")),
    "per": ("--per", ("points",)),
    "k": ("--k", ("points",)),
    "placement": ("--placement", ("points",)),
    "point_radius": ("--point-radius", ("points",)),
    "max_rank": ("--max-rank", ("points",)),
    "background": ("--background / --no-background", ("points", "scribbles")),
    "width": ("--width", ("scribbles",)),
    "length_ratio": ("--length-ratio", ("scribbles",)),
    "from_annotations": ("--from-annotations", ("points", "scribbles", "boxes")),
}


# Options that shape synthesized labels only (``ConvertOptions.synth_options``): human annotations
# (--from-annotations, DensePose's points) are read as they are, so these would be ignored.
SYNTHESIS_ONLY = ("min_pixels", "min_area", "connectivity", "k", "per", "placement", "background", "length_ratio")


def _kind_option_error(args, given: set[str]) -> str | None:
    """The message refusing the given protocol options that ``--to`` ignores, or that the source of
    the labels (synthesis or human annotations) ignores; ``None`` when every option is used."""
    bad = [(flag, kinds) for dest, (flag, kinds) in KIND_OPTIONS.items() if dest in given and args.to not in kinds]
    if bad:
        used = ", ".join(f"{flag} (for --to {' / '.join(kinds)})" for flag, kinds in bad)
        return f"--to {args.to} does not use {used}; drop {'it' if len(bad) == 1 else 'them'}"
    if "from_annotations" in given or getattr(args, "dataset", None) == "densepose":
        unused = [KIND_OPTIONS[d][0] for d in SYNTHESIS_ONLY if d in given]
        if unused:
            return (f"{', '.join(unused)} shape{'s' if len(unused) == 1 else ''} synthesized labels; human "
                    f"annotations ({'--from-annotations' if 'from_annotations' in given else 'densepose'}) are "
                    f"read as they are: drop {'it' if len(unused) == 1 else 'them'}")
    elif "max_rank" in given:
        return "--max-rank selects human clicks by rank: it needs --from-annotations"
    return None


class _Parser(argparse.ArgumentParser):
    """A subcommand's parser: fills in the ``_Unset`` defaults, and refuses (exit 2, as any bad
    command line) the protocol options the chosen kind would ignore; only options the user typed
    count, never defaults."""

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        values = vars(ns)
        given = {k for k, v in values.items() if k in KIND_OPTIONS and v is not None and not isinstance(v, _Unset)}
        for k, v in values.items():
            if isinstance(v, _Unset):
                setattr(ns, k, v.value)
        if getattr(ns, "to", None) is not None:
            message = _kind_option_error(ns, given)
            if message:
                self.error(message)
        if getattr(ns, "dataset", None) in ("hf", "densepose") and getattr(ns, "masks", "auto") != "auto":
            self.error(f"--masks {ns.masks} is for voc and coco; {ns.dataset} reads its masks from "
                       + ("--mask-column" if ns.dataset == "hf" else "the DensePose annotations"))
        return ns, rest


def _protocol_args(c: argparse.ArgumentParser) -> None:
    g = c.add_argument_group("protocol options")
    g.add_argument("--min-pixels", type=_int_at_least(1), default=_Unset(1), help="tags: pixels a class needs to be a tag")
    g.add_argument("--min-area", type=_int_at_least(1), default=_Unset(10), help="smallest object, px: smaller components get an ignore box (boxes), smaller classes or "
                        "objects no point or stroke (points, scribbles; still tagged)")
    g.add_argument("--connectivity", type=int, default=_Unset(8), choices=(4, 8), help="boxes from components")
    g.add_argument("--per", default=_Unset("class"), choices=("class", "instance"), help="points: per class or per object")
    g.add_argument("--k", type=_int_at_least(1), default=_Unset(1), help="points per class / object")
    g.add_argument("--placement", default=_Unset("center"), choices=("center", "random", "human"), help="points placement")
    g.add_argument("--background", action=argparse.BooleanOptionalAction, default=None,
                   help="also annotate background (default: on for scribbles, off for points)")
    g.add_argument("--width", type=_float_in(0, open_low=True), default=_Unset(3.0), help="scribbles: stroke width in pixels (SPML: 3)")
    g.add_argument("--length-ratio", type=_float_in(0, 1), default=_Unset(1.0),
                   help="scribbles: kept fraction of each stroke, 1.0 / 0.8 / 0.5 / 0.3 / 0.0 (0 = one point)")
    g.add_argument("--point-radius", type=_float_in(0), default=_Unset(0.0),
                   help="points: label every pixel within this radius in weak_label (default: the pixel only)")
    g.add_argument("--seed", type=_int_at_least(0), default=0, help="seed for every random choice (default 0)")
    g.add_argument("--from-annotations", metavar="PATH",
                   help="use human weak labels instead of synthesis: What's-the-Point click JSON(s) "
                        "(--to points; comma-separated), a ScribbleSup XML folder (--to scribbles), "
                        "a VOC XML folder or COCO JSON (--to boxes)")
    g.add_argument("--max-rank", type=_int_at_least(1), help="points from clicks: keep clicks of rank <= this")


def _source_args(c: argparse.ArgumentParser, datasets: tuple[str, ...]) -> None:
    c.add_argument("dataset", choices=datasets)
    c.add_argument("--to", required=True, choices=WEAK_KINDS, help="kind of weak label to produce")
    c.add_argument("--root", help="voc: devkit folder; coco / densepose: image folder (convert needs it with "
                                  "--annotations, or --masks-only); hf: hub id or local path (default for voc, "
                                  "and for coco without --annotations: the bundled sample)")
    c.add_argument("--annotations", help="coco / densepose: the instances JSON file")
    c.add_argument("--split", help="split name(s), comma-separated (default: train; coco: the "
                                    "annotation file's name, e.g. instances_val2017.json -> val2017)")
    v = c.add_argument_group("voc / coco options")
    v.add_argument("--masks", default="auto", choices=("auto", "SegmentationClass", "SegmentationClassAug", "none"),
                   help="voc: the class mask folder, or none (boxes from Annotations/ XML); coco: auto or none "
                        "(boxes from the bbox fields alone, no gt; auto does so when no annotation has a "
                        "segmentation)")
    h = c.add_argument_group("hf options")
    h.add_argument("--image-column", default="image")
    h.add_argument("--mask-column", default="annotation")
    h.add_argument("--instance-column")
    h.add_argument("--id-column")
    h.add_argument("--class-names", help="comma-separated class names, index order")
    h.add_argument("--classes-column", help="the ClassLabel column holding class names")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="weaklabels", description="Weak labels for semantic segmentation.",
                                epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 items skipped, "
                                       "4 data error, 5 output refused, 130 interrupted (rerun to resume).")
    p.add_argument("--version", action="version", version=f"weaklabels {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("convert", help="derive weak labels from a fully annotated dataset and write them")
    _source_args(c, ("voc", "coco", "hf", "densepose"))
    c.add_argument("--out", help="output folder (default: ./weaklabels-DATASET-KIND)")
    c.add_argument("--format", default="hf", choices=("hf", "voc"),
                   help="hf: parquet shards + dataset card (default); voc: PNGs + list files, tags in "
                        "SPLIT_tags.json, boxes as VOC XML in Annotations/ (points and scribbles: their "
                        "labelled pixels only, in WeakLabels/)")
    c.add_argument("--num-proc", type=_int_at_least(1), default=1, help="worker processes (default 1)")
    c.add_argument("--overwrite", action="store_true", help="replace a previous output in --out")
    c.add_argument("--masks-only", action="store_true",
                   help="coco / densepose: convert without images, on purpose (no --root; the image "
                        "column is null, as for VOC masks without JPEGImages)")
    c.add_argument("--on-error", default="fail", choices=("fail", "skip"),
                   help="fail: stop at the first bad item; skip: list it in errors.json and go on")
    c.add_argument("--gt", default="auto", choices=("auto", "always", "never"),
                   help="store the full mask as 'gt' (auto: evaluation splits only)")
    c.add_argument("--shard-size", type=_int_at_least(1), default=256, help="images per parquet shard")
    c.add_argument("--regions", default="none", type=_regions,
                   help="low-level regions stored with each image (SPML's relation V): none (default), "
                        "felzenszwalb, slic, or a folder of region PNGs named by image id")
    c.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    _protocol_args(c)
    c.set_defaults(func=cmd_convert)

    r = sub.add_parser("report", help="fidelity of weak labels against the full masks (no output written)")
    _source_args(r, ("voc", "coco", "hf"))
    _protocol_args(r)
    r.add_argument("--clicks", help="What's-the-Point JSON(s) to compare points with (comma-separated)")
    r.add_argument("--limit", type=_int_at_least(1), help="only the first N images")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("show", help="render an overlay PNG of a converted sample")
    s.add_argument("dataset", help="a folder written by weaklabels convert")
    s.add_argument("--split", help="default: train if present, else the first split")
    s.add_argument("--index", type=_int_at_least(0), default=0)
    s.add_argument("--id", help="image id (instead of --index)")
    s.add_argument("--out", help="PNG to write (default: ID_overlay.png)")
    s.set_defaults(func=cmd_show)

    t = sub.add_parser("stats", help="print a converted dataset's per-class summary and write it as CSV")
    t.add_argument("dataset")
    t.add_argument("--csv", help="CSV path (default: DATASET/stats.csv)")
    t.set_defaults(func=cmd_stats)

    m = sub.add_parser("sample", help="generate sample data")
    msub = m.add_subparsers(dest="generator", required=True)
    sh = msub.add_parser("shapes", help="textured shapes scenes in the VOC layout (+ COCO JSON)")
    sh.add_argument("--out", required=True)
    sh.add_argument("--num-images", type=_int_at_least(1), default=100)
    sh.add_argument("--seed", type=_int_at_least(0), default=0)
    sh.add_argument("--height", type=_int_at_least(8), default=96)
    sh.add_argument("--width", type=_int_at_least(8), default=128)
    sh.add_argument("--classes", default="5", type=_classes, help="number of shape classes, or 'voc' for the 21 VOC classes")
    sh.add_argument("--boundary", action="store_true", help="mark a 1-px void (255) band along object edges")
    sh.add_argument("--overwrite", action="store_true")
    sh.add_argument("--quiet", action="store_true")
    sh.set_defaults(func=cmd_sample)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OutputExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_OUTPUT
    except WeaklabelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_DATA


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
