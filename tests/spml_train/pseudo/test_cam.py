"""CAM labels: thresholds, background score, boxes, and the classifier's training signal."""

from __future__ import annotations

import numpy as np
import torch

from spml_train.pseudo.cam import CAMNet, image_cams, labels_from_cams, train_classifier

U = 254


def test_tags_label_confident_pixels_only():
    cams = np.zeros((2, 4, 6), np.float32)  # foreground classes 1 and 2
    cams[0, :, :2] = 0.9    # class 1, strong
    cams[1, :, 4:] = 0.35   # class 2, weak: background score (1 - 0.35)^6 = 0.075, so class 2 wins
    weak = np.full((4, 6), U, np.uint8)
    weak[3, 5] = 255
    out = labels_from_cams(cams, [1, 2], [1, 2], weak, [], unlabelled=U, background=0, threshold=0.2)
    assert (out[:, :2] == 1).all()
    assert (out[:3, 4:] == 2).all() and out[3, 5] == 255            # ignore stays ignore
    assert (out[:, 2:4] == 0).all()                                   # no CAM: background scores 1


def test_classes_absent_from_the_tags_are_zeroed():
    cams = np.ones((2, 3, 3), np.float32)
    out = labels_from_cams(cams, [1, 2], [2], np.full((3, 3), U, np.uint8), [], unlabelled=U, background=0)
    assert (out == 2).all()


def test_boxes_label_their_class_where_the_normalised_cam_reaches_half():
    cams = np.zeros((1, 6, 6), np.float32)
    cams[0, 1:3, 1:3] = 0.2
    cams[0, 3:5, 3:5] = 0.1  # inside the box: 0.1 / 0.2 = 0.5 -> labelled
    cams[0, 1, 4] = 0.05     # inside the box but below half the box maximum
    weak = np.zeros((6, 6), np.uint8)
    weak[1:5, 1:5] = U       # the box interior is unlabelled in the boxes weak label
    box = {"x0": 1.0, "y0": 1.0, "x1": 5.0, "y1": 5.0, "label": 1, "crowd": False}
    out = labels_from_cams(cams, [1], [1], weak, [box], unlabelled=U, background=0)
    assert (out[1:3, 1:3] == 1).all() and (out[3:5, 3:5] == 1).all()
    assert out[1, 4] == U and out[0, 0] == 0                           # candidate set kept; outside bg


def test_classifier_learns_tags_and_cams_are_normalised():
    torch.manual_seed(0)
    model = CAMNet("resnet_tiny", 2)

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            images = torch.randn(4, 3, 32, 32, generator=g)
            tags = torch.zeros(4, 3, dtype=torch.bool)
            tags[:2, 1] = True
            images[:2, 0] += 3.0  # class 1 images are red
            tags[2:, 2] = True
            yield 0, 0, {"image": images, "tags": tags}

    losses = train_classifier(model, batches(), [1, 2], 40, 0.05, torch.device("cpu"))
    assert losses[-1] < losses[0]
    cams = image_cams(model, torch.randn(3, 32, 32))
    assert cams.shape == (2, 32, 32) and float(cams.max()) <= 1.0 + 1e-6 and float(cams.min()) >= 0


def test_multiscale_cams_sum_each_scale_and_flip():
    """image_cams against a plain reference: at each scale, the ReLU'd class maps of the image and
    of its flip (flipped back), bilinearly resized to the image, summed over scales and flips, then
    each class divided by its maximum."""
    torch.manual_seed(0)
    model = CAMNet("resnet_tiny", 2).eval()
    image = torch.randn(3, 40, 56)

    def ref(scales):
        total = torch.zeros(2, 40, 56)
        with torch.no_grad():
            for s in scales:
                x = torch.nn.functional.interpolate(image[None], scale_factor=s, mode="bilinear", align_corners=False)
                for flip in (False, True):
                    v = x.flip(-1) if flip else x
                    c = torch.relu(model.cams(v))[0]
                    c = c.flip(-1) if flip else c
                    total += torch.nn.functional.interpolate(c[None], size=(40, 56), mode="bilinear",
                                                             align_corners=False)[0]
        return total / total.flatten(1).amax(1)[:, None, None]

    for scales in ((1.0,), (0.5, 1.0, 2.0)):
        torch.testing.assert_close(image_cams(model, image, scales), ref(scales), atol=1e-5, rtol=1e-4)
    # finer maps at a larger scale: not the same as the single-scale maps
    assert not torch.allclose(image_cams(model, image, (2.0,)), image_cams(model, image, (1.0,)), atol=1e-3)
