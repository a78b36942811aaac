"""Mask R-CNN as a segmenter: label slices ↔ instances, its loss, and per-pixel scores from detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn

from nephroseg.errors import NephrosegInputError
from nephroseg.models import build_model, model_info, parameter_count
from nephroseg.models.instances import instances_to_semantic, semantic_to_instances
from nephroseg.models.maskrcnn import MaskRCNNSegmenter, semantic_log_probs
from nephroseg.recipe import ModelSpec

LIGHT = 0.125  # any width < 1: the ResNet18-FPN detector


def clean_slice() -> np.ndarray:
    """Two kidneys (one holding a tumor, one with a tumor on its rim), a lone tumor, a diagonal pair."""
    label = np.zeros((48, 64), np.uint8)
    label[5:25, 5:20] = 1
    label[10:15, 9:14] = 2  # inside the first kidney: the kidney instance gets a hole
    label[30:45, 40:60] = 1
    label[28:33, 50:55] = 2  # straddles the second kidney's upper edge
    label[5:9, 40:44] = 2
    label[40, 5] = label[41, 6] = 1  # diagonal neighbours: one component under 8-connectivity
    return label


def paint(instances, score: float = 1.0) -> np.ndarray:
    masks = np.stack([inst.mask for inst in instances])
    labels = np.array([inst.label for inst in instances])
    return instances_to_semantic(masks, labels, np.full(len(instances), score), masks.shape[1:])


def test_round_trip_is_exact_and_kidneys_have_holes() -> None:
    label = clean_slice()
    instances = semantic_to_instances(label)
    assert sorted(inst.label for inst in instances) == [1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(paint(instances), label)
    first_kidney = next(i for i in instances if i.label == 1 and i.mask[5, 5])
    assert not first_kidney.mask[10:15, 9:14].any()  # the tumor's pixels are not the kidney's
    assert first_kidney.box == (5, 5, 20, 25)  # x1, y1, x2, y2 with exclusive ends


def test_single_pixel_box_and_diagonal_component() -> None:
    label = np.zeros((8, 8), np.uint8)
    label[3, 5] = 2
    label[6, 1] = label[7, 2] = 1
    by_label = {inst.label: inst for inst in semantic_to_instances(label)}
    assert by_label[2].box == (5, 3, 6, 4)
    assert by_label[1].box == (1, 6, 3, 8) and by_label[1].mask.sum() == 2


def test_overlap_goes_to_the_higher_score_then_the_higher_label() -> None:
    masks = np.zeros((2, 6, 6), np.float32)
    masks[0, 0:4, 0:4] = 0.9  # kidney
    masks[1, 2:6, 2:6] = 0.8  # tumor
    labels = np.array([1, 2])
    kidney_wins = instances_to_semantic(masks, labels, np.array([0.9, 0.7]), (6, 6))
    tumor_wins = instances_to_semantic(masks, labels, np.array([0.7, 0.9]), (6, 6))
    tie = instances_to_semantic(masks, labels, np.array([0.8, 0.8]), (6, 6))
    assert kidney_wins[2:4, 2:4].tolist() == [[1, 1], [1, 1]] and kidney_wins[5, 5] == 2
    assert tumor_wins[2:4, 2:4].tolist() == [[2, 2], [2, 2]] and tumor_wins[0, 0] == 1
    assert (tie[2:4, 2:4] == 2).all()


def test_thresholds_and_empty_slices() -> None:
    masks = np.array([[[0.49, 0.5, 1.0]], [[1.0, 1.0, 1.0]]], np.float32)
    labels = np.array([1, 2])
    painted = instances_to_semantic(masks, labels, np.array([0.5, 0.49]), (1, 3))
    assert painted.tolist() == [[0, 1, 1]]  # the tumor scores under 0.5; the first pixel's mask too
    lower = instances_to_semantic(masks, labels, np.array([0.5, 0.49]), (1, 3), score_threshold=0.4)
    assert lower.tolist() == [[2, 1, 1]]  # both shown now; the kidney outscores the tumor
    assert semantic_to_instances(np.zeros((5, 7), np.uint8)) == []
    empty = instances_to_semantic(np.zeros((0, 5, 7)), np.zeros(0, int), np.zeros(0), (5, 7))
    assert empty.shape == (5, 7) and not empty.any()


def random_detections(seed: int, k: int = 12, size: int = 24):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, size, size, generator=g)
    labels = torch.randint(1, 3, (k,), generator=g)
    scores = torch.rand(k, generator=g).round(decimals=1)  # coarse, so equal scores (ties) occur
    return masks, labels, scores


@pytest.mark.parametrize("seed", range(5))
def test_semantic_scores_argmax_is_the_painting(seed: int) -> None:
    masks, labels, scores = random_detections(seed)
    log_probs = semantic_log_probs(masks, labels, scores, 3, 0.5)
    expected = instances_to_semantic(masks.numpy(), labels.numpy(), scores.numpy(), (24, 24))
    np.testing.assert_array_equal(log_probs.argmax(0).numpy(), expected)


def test_semantic_scores_values() -> None:
    masks = torch.zeros(2, 4, 4)
    masks[0, :, :2] = 0.7  # kidney, score 0.8, left half
    masks[1, :, 1:3] = 0.6  # tumor, score 0.6, overlapping column 1
    probs = semantic_log_probs(masks, torch.tensor([1, 2]), torch.tensor([0.8, 0.6]), 3, 0.5).softmax(0)
    torch.testing.assert_close(probs[:, 0, 0], torch.tensor([0.1, 0.8, 0.1]))
    torch.testing.assert_close(probs[:, 0, 1], torch.tensor([0.1, 0.8, 0.1]))  # overlap: higher score
    torch.testing.assert_close(probs[:, 0, 2], torch.tensor([0.2, 0.2, 0.6]))
    torch.testing.assert_close(probs[:, 0, 3], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5, rtol=0)


class FixedDetections(nn.Module):
    """Stands in for the detector: the same hand-made detections for every image, none for the last."""

    def __init__(self, masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> None:
        super().__init__()
        self.detection = {"masks": masks[:, None], "labels": labels, "scores": scores}

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        shape = images[0].shape[-2:]
        none = {"masks": torch.zeros(0, 1, *shape), "labels": torch.zeros(0, dtype=torch.int64)}
        return [self.detection] * (len(images) - 1) + [{**none, "scores": torch.zeros(0)}]


def test_eval_forward_paints_the_detections() -> None:
    model = MaskRCNNSegmenter(1, 3, LIGHT).eval()
    masks, labels, scores = random_detections(seed=7)
    model.detector = FixedDetections(masks, labels, scores)
    scores_out = model(torch.zeros(3, 1, 24, 24))
    assert scores_out.shape == (3, 3, 24, 24) and torch.isfinite(scores_out).all()
    expected = instances_to_semantic(masks.numpy(), labels.numpy(), scores.numpy(), (24, 24))
    for image in scores_out[:2]:
        np.testing.assert_array_equal(image.argmax(0).numpy(), expected)
    assert (scores_out[2].argmax(0) == 0).all()


@pytest.mark.parametrize("options", [{}, {"min_size": 64, "max_size": 128}])
def test_eval_forward_with_the_real_detector(options: dict) -> None:
    """Resize off (default) or on: scores come back at the input size and agree with the detections."""
    torch.manual_seed(0)
    model = MaskRCNNSegmenter(1, 3, LIGHT, score_threshold=0.34, **options).eval()
    x = torch.randn(2, 1, 32, 64)
    seen = model.detector.transform(list(x))[0].image_sizes
    assert seen == [(64, 128) if options else (32, 64)] * 2
    out = model(x)
    assert out.shape == (2, 3, 32, 64) and torch.isfinite(out).all() and not out.requires_grad
    with torch.no_grad():
        detections = model.detector(list(x))
    for image, d in zip(out, detections, strict=True):
        found = d["masks"][:, 0].numpy(), d["labels"].numpy(), d["scores"].numpy()
        expected = instances_to_semantic(*found, (32, 64), score_threshold=0.34)
        np.testing.assert_array_equal(image.argmax(0).numpy(), expected)


def test_training_loss_reaches_the_first_layer_even_with_an_empty_slice() -> None:
    torch.manual_seed(0)
    model = MaskRCNNSegmenter(1, 3, LIGHT).train()
    labels = torch.zeros(2, 64, 64, dtype=torch.int64)
    labels[0] = torch.from_numpy(np.pad(clean_slice(), ((8, 8), (0, 0))))  # slice 1 has no object
    loss = model.training_loss(torch.randn(2, 1, 64, 64), labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    first = model.detector.backbone.body.conv1.weight
    assert first.shape[1] == 1 and first.grad is not None and float(first.grad.abs().sum()) > 0


def test_modes_are_enforced() -> None:
    model = MaskRCNNSegmenter(1, 3, LIGHT)
    assert MaskRCNNSegmenter.trains_with_own_loss
    with pytest.raises(RuntimeError, match="training_loss"):
        model.train()(torch.zeros(1, 1, 32, 32))
    with pytest.raises(RuntimeError, match="train mode"):
        model.eval().training_loss(torch.zeros(1, 1, 32, 32), torch.zeros(1, 32, 32, dtype=torch.int64))


def test_full_size_is_torchvisions_maskrcnn_resnet50_fpn() -> None:
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3)
    model = build_model(ModelSpec(name="maskrcnn", in_slices=3, width=1.0))
    assert parameter_count(model) == parameter_count(reference) == 43_980_897
    one_slice = build_model(ModelSpec(name="maskrcnn", in_slices=1, width=1.0))
    assert parameter_count(model) - parameter_count(one_slice) == 2 * 64 * 7 * 7  # conv1's extra planes
    info = model_info("maskrcnn")
    assert (info.divisor, info.input_kind) == (32, "2d")


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        MaskRCNNSegmenter(1, 3, LIGHT, score_threshold=0.3)
    with pytest.raises(ValueError, match="width"):
        MaskRCNNSegmenter(1, 3, 2.0)
    with pytest.raises(NephrosegInputError, match=r"model\.options"):
        build_model(ModelSpec(name="maskrcnn", in_slices=1, width=LIGHT, options={"trainable_layers": 3}))
