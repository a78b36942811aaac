"""Seed 003's LinkNet on a ResNet18 encoder: segmentation-models-pytorch builds exactly that.

The encoder is torchvision's ResNet18 layout (smp wraps it); it starts from random weights
(``encoder_weights=None``) because nothing can be downloaded; ``--weights`` loads local ones.
``width`` is accepted for the registry's interface but a ResNet18 has one size: tests use it as is.
"""

from __future__ import annotations

from torch import nn

from nephroseg.models.registry import register_model


@register_model(
    "linknet_resnet18",
    input_kind="2d",
    source="003 (LinkNet decoder on a ResNet18 encoder)",
    description="LinkNet (smp) with a ResNet18 encoder; decoder adds encoder features, no concat",
    divisor=32,
)
def build_linknet(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    del width  # a ResNet18 has one size
    import segmentation_models_pytorch as smp  # here, not above: it imports timm (0.4 s per command)

    return smp.Linknet(
        encoder_name="resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes
    )
