"""Seed 000's Mask R-CNN as a semantic segmenter: torchvision's detector, trained on kidney and
tumor instances cut from the label slices, answering with per-pixel class scores.

Training goes through ``training_loss`` (torchvision's RPN, box and mask losses), never through
``forward``: detections are not differentiable into a per-pixel map, so ``trains_with_own_loss``
tells callers that a segmentation loss on ``forward``'s output cannot train this model.

Inputs are our normalized slices, not RGB photographs: torchvision's ImageNet normalization is
replaced by the identity (mean 0, std 1), and the first convolution takes ``in_channels`` directly.
With no pretrained weights, a 1-channel conv is exactly what repeating a slice to 3 channels would
compute (the three weight planes summed), without a 3× copy of every image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from nephroseg.models.instances import semantic_to_instances
from nephroseg.models.registry import register_model

MASK_THRESHOLD = 0.5  # torchvision's (and the paper's) binarization of mask probabilities
LOG_FLOOR = 1e-6  # probabilities are clamped here before the log, so scores stay finite


class _NoResize(GeneralizedRCNNTransform):
    """Normalize and batch only: our preprocessing has already fixed the pixel spacing."""

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.image_mean}, std={self.image_std}, no resize)"


def semantic_log_probs(
    masks: Tensor, labels: Tensor, scores: Tensor, num_classes: int, score_threshold: float
) -> Tensor:
    """(K, H, W) mask probabilities of K detections → (C, H, W) log-probabilities.

    Each pixel goes to the highest-scoring detection (score ≥ threshold) whose mask covers it, ties
    to the higher label: ``instances_to_semantic``'s rule, so the argmax equals its painting. That
    class gets the detection's score as probability and the other classes share the rest, which
    keeps it the argmax whenever score > 1/C; uncovered pixels are background with probability 1.
    """
    keep = scores >= score_threshold
    covered = (masks[keep] >= MASK_THRESHOLD) * scores[keep, None, None]  # the score where covered
    best = masks.new_zeros((num_classes, *masks.shape[-2:]))  # best covering score per class
    for cls in range(1, num_classes):
        of_class = labels[keep] == cls
        if of_class.any():
            best[cls] = covered[of_class].amax(dim=0)
    score, flipped = best.flip(0).max(dim=0)  # first maximum of the flipped classes: the higher label
    winner = torch.where(score > 0, num_classes - 1 - flipped, 0)
    confidence = torch.where(score > 0, score, 1.0)
    probs = ((1 - confidence) / (num_classes - 1)).expand_as(best).clone()
    probs.scatter_(0, winner[None], confidence[None])
    return probs.clamp_min(LOG_FLOOR).log()


def _instance_targets(label_slice: Tensor, device: torch.device) -> dict[str, Tensor]:
    """One label slice → torchvision's target dict (empty tensors when the slice has no object)."""
    instances = semantic_to_instances(label_slice.cpu().numpy())
    if instances:
        masks = np.stack([inst.mask for inst in instances])
    else:
        masks = np.zeros((0, *label_slice.shape), dtype=bool)
    target = {
        "boxes": torch.tensor([inst.box for inst in instances], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([inst.label for inst in instances], dtype=torch.int64),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }
    return {key: value.to(device) for key, value in target.items()}


class MaskRCNNSegmenter(nn.Module):
    """torchvision Mask R-CNN behind the segmentation interface (N, C, H, W) in, class scores out.

    ``width`` cannot thin a ResNet50-FPN (its bottleneck and 256-channel FPN widths are what make it
    the seed's network), so width 1 builds ``maskrcnn_resnet50_fpn`` and any width < 1 builds the
    same detector on a ResNet18-FPN: lighter, for tests and CPU smoke runs only.

    ``min_size``/``max_size`` left at None (the default) switch torchvision's internal resize off:
    slices are already resampled to the model's spacing, and training crops and whole inference
    slices differ in size, so any fixed target size would show objects at different scales in
    training and inference. Giving either turns torchvision's rule on (shorter side to
    ``min_size``, longer side at most ``max_size``; a missing one copies the other).
    """

    trains_with_own_loss = True
    divisor = 32

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 3,
        width: float = 1.0,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        score_threshold: float = 0.5,
        box_detections_per_img: int = 20,
    ) -> None:
        super().__init__()
        if not 1 / num_classes < score_threshold <= 1:
            raise ValueError(f"score_threshold must lie in (1/{num_classes}, 1], got {score_threshold}")
        if width > 1:
            raise ValueError(f"width must be at most 1 (1 = ResNet50-FPN, < 1 = ResNet18-FPN), got {width}")
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        resize = min_size is not None or max_size is not None
        min_size = min_size or max_size or 512
        max_size = max_size or min_size
        options = {
            "min_size": min_size,
            "max_size": max_size,
            "image_mean": [0.0] * in_channels,
            "image_std": [1.0] * in_channels,
            # Below the painting threshold a detection can never show, so the mask head skips it.
            "box_score_thresh": score_threshold,
            "box_detections_per_img": box_detections_per_img,
        }
        if width == 1:
            self.detector = maskrcnn_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=num_classes, **options
            )
        else:
            backbone = resnet_fpn_backbone(
                backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
            )
            self.detector = MaskRCNN(backbone, num_classes=num_classes, **options)
        if in_channels != 3:
            body = self.detector.backbone.body
            body.conv1 = nn.Conv2d(in_channels, body.conv1.out_channels, 7, stride=2, padding=3, bias=False)
        if not resize:
            self.detector.transform = _NoResize(
                min_size, max_size, options["image_mean"], options["image_std"], size_divisible=self.divisor
            )

    def training_loss(self, images: Tensor, labels: Tensor) -> Tensor:
        """Sum of torchvision's losses on (N, C, H, W) images and (N, H, W) semantic labels."""
        if not self.training:
            raise RuntimeError("Mask R-CNN computes its losses in train mode only")
        targets = [_instance_targets(label, images.device) for label in labels]
        losses = self.detector(list(images), targets)
        return torch.stack(list(losses.values())).sum()

    def forward(self, images: Tensor) -> Tensor:
        """(N, C, H, W) images → (N, num_classes, H, W) log-probabilities from the detections."""
        if self.training:
            raise RuntimeError("in train mode use training_loss(images, labels); forward predicts (eval)")
        with torch.no_grad():
            detections = self.detector(list(images))
        return torch.stack(
            [
                semantic_log_probs(
                    d["masks"][:, 0], d["labels"], d["scores"], self.num_classes, self.score_threshold
                )
                for d in detections
            ]
        )


@register_model(
    "maskrcnn",
    input_kind="2d",
    source="000 (MILab: Mask R-CNN, train/test split, 90 epochs, batch 50)",
    description="torchvision Mask R-CNN (ResNet50-FPN); kidney and tumor instances painted by score",
    divisor=32,
)
def build_maskrcnn(in_channels: int, num_classes: int, width: float = 1.0, **options) -> nn.Module:
    return MaskRCNNSegmenter(in_channels, num_classes, width, **options)
