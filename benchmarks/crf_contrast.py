"""Colour statistics that the dense CRF's bilateral rgb std works against: toy scenes vs photos.

    python benchmarks/crf_contrast.py [--coco ../shared/data/coco-tiny] [--num-images 320] [--step 4]

For pixel pairs ``step`` pixels apart (horizontally and vertically), the Euclidean RGB distance
between the two pixels, split into pairs inside one segment (the same object instance, or both
background) and pairs across a segment boundary. The bilateral kernel ``exp(-d^2 / 2 rgb_std^2)``
should be wide for the first and near zero for the second. Photos: the ``val2017`` images of COCO
with their instance masks (pycocotools; needs ``../shared/data`` or any COCO folder). Toy: the
shapes scenes of the toy recipes (``recipes/_toy.yaml``: 96 x 128, 5 classes, seed 0), written as
JPEG exactly as the recipes read them, with their instance masks.

Prints the medians and quartiles, and as its last line one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def pair_distances(rgb: np.ndarray, seg: np.ndarray, step: int, ignore: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """RGB distances of pixel pairs ``step`` apart: (inside one segment, across segments); ``ignore``
    pixels left out."""
    rgb = rgb.astype(np.float32)
    inside, across = [], []
    for a, b, sa, sb in ((rgb[:, :-step], rgb[:, step:], seg[:, :-step], seg[:, step:]),
                         (rgb[:-step], rgb[step:], seg[:-step], seg[step:])):
        d = np.linalg.norm(a - b, axis=-1)
        ok = (sa != ignore) & (sb != ignore)
        inside.append(d[ok & (sa == sb)])
        across.append(d[ok & (sa != sb)])
    return np.concatenate(inside), np.concatenate(across)


def coco_pairs(root: Path, step: int):
    from pycocotools.coco import COCO

    ann = root / "annotations" / "instances_val2017.json"
    if not ann.is_file():
        raise SystemExit(f"{ann}: not found (pass --coco with a COCO folder holding annotations/ and val2017/)")
    coco = COCO(str(ann))
    inside, across, n = [], [], 0
    for iid in coco.getImgIds():
        info = coco.loadImgs(iid)[0]
        path = root / "val2017" / info["file_name"]
        if not path.is_file():
            continue
        rgb = np.array(Image.open(path).convert("RGB"))
        seg = np.zeros(rgb.shape[:2], np.int32)  # instance id, 0 = background; crowd regions ignored
        for k, a in enumerate(coco.loadAnns(coco.getAnnIds(imgIds=iid))):
            seg[coco.annToMask(a) > 0] = 255 if a["iscrowd"] else k + 1
        i, x = pair_distances(rgb, seg, step)
        inside.append(i)
        across.append(x)
        n += 1
    return np.concatenate(inside), np.concatenate(across), n


def toy_pairs(num_images: int, step: int):
    from weaklabels.sources.shapes import shapes_vocabulary, write_shapes

    inside, across = [], []
    with tempfile.TemporaryDirectory() as tmp:
        write_shapes(tmp, num_images, 0, height=96, width=128, vocabulary=shapes_vocabulary(5), val_fraction=0.2)
        voc = Path(tmp) / "VOCdevkit" / "VOC2012"
        files = sorted((voc / "JPEGImages").glob("*.jpg"))
        for f in files:
            rgb = np.array(Image.open(f).convert("RGB"))
            seg = np.array(Image.open(voc / "SegmentationObject" / f"{f.stem}.png"))
            i, x = pair_distances(rgb, seg, step)
            inside.append(i)
            across.append(x)
    return np.concatenate(inside), np.concatenate(across), len(files)


def describe(inside: np.ndarray, across: np.ndarray, n: int) -> dict:
    q = lambda a, p: round(float(np.percentile(a, p)), 1)  # noqa: E731
    return {"images": n, "inside_median": q(inside, 50), "inside_p25": q(inside, 25), "inside_p75": q(inside, 75),
            "across_median": q(across, 50), "across_p25": q(across, 25), "across_p75": q(across, 75)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coco", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/coco-tiny"))
    ap.add_argument("--num-images", type=int, default=320, help="toy scenes (the recipes' 256 + 64)")
    ap.add_argument("--step", type=int, default=4, help="pixel distance of a pair")
    args = ap.parse_args()
    photo = describe(*coco_pairs(Path(args.coco), args.step))
    toy = describe(*toy_pairs(args.num_images, args.step))
    for name, r in (("COCO val2017", photo), ("toy scenes", toy)):
        print(f"{name:<13} {r['images']:4d} images  inside a segment: median {r['inside_median']:5.1f} "
              f"(IQR {r['inside_p25']}-{r['inside_p75']})  across: median {r['across_median']:5.1f} "
              f"(IQR {r['across_p25']}-{r['across_p75']})")
    print(json.dumps({"step_px": args.step,
                      "coco_inside_median_rgb": photo["inside_median"], "coco_across_median_rgb": photo["across_median"],
                      "toy_inside_median_rgb": toy["inside_median"], "toy_across_median_rgb": toy["across_median"],
                      "across_toy_vs_coco_x": round(toy["across_median"] / photo["across_median"], 2),
                      "inside_toy_vs_coco_x": round(toy["inside_median"] / photo["inside_median"], 2)}))


if __name__ == "__main__":
    main()
