"""Seed 002's plain U-Net (512×512, cross-entropy) and seed 003's U-Net (256×256, padding "same").

Both are Ronneberger's encoder-decoder with skip connections by concatenation; MONAI's ``BasicUNet``
is exactly that (two 3×3 same-padded convolutions per level, four max-pool down-samplings,
transposed-convolution up-sampling), so it is used as is. ``width`` scales the classic
64-128-256-512-1024 channel ladder.
"""

from __future__ import annotations

from monai.networks.nets import BasicUNet
from torch import nn

from nephroseg.models.registry import register_model

CLASSIC_FEATURES = (64, 128, 256, 512, 1024, 64)  # encoder levels, then the last decoder level


@register_model(
    "unet",
    input_kind="2d",
    source="002 (plain U-Net, 512×512, CE) and 003 (U-Net at 256×256, padding same)",
    description="encoder-decoder with concatenated skips (MONAI BasicUNet), 4 down-samplings",
    divisor=16,
)
def build_unet(in_channels: int, num_classes: int, width: float = 1.0, norm: str = "batch") -> nn.Module:
    features = tuple(max(4, round(f * width)) for f in CLASSIC_FEATURES)
    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        features=features,
        act=("relu", {"inplace": True}),
        norm=norm,
        dropout=0.0,
    )
