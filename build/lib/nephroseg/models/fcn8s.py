"""Seed 003's FCN-8s on a VGG16 encoder, V1 and V2.

V1 is Long et al.'s FCN-8s: VGG16's five convolution blocks, a reduced fully-convolutional head
(conv6 3×3 → 1024, conv7 1×1 → 1024, instead of 7×7 → 4096), class scores from conv7, pool4 and
pool3, fused by two ×2 transposed convolutions and brought to full size by a ×8 one.
V2 is the report's change: after each transposed convolution a same-padded 3×3 convolution with
ReLU extracts features again (then a 1×1 projection back to class scores, so fusion is unchanged).

Parameter counts (1 input slice, 3 classes, width 1): V1 20,490,738 and V2 20,496,699
(``tests/test_models_seeds.py`` pins them). The report lists 6,198,019 and 11,543,715: those are
Keras *trainable* counts with the ImageNet VGG16 frozen (its 14.7 M convolution weights are not
counted), and its V2 refinement layers carry many filters. We train from scratch (no weights can be
downloaded), so the encoder is trainable and counted; our V2 refinement is deliberately narrow
(64 filters) so that V2 differs from V1 only in the added feature-extraction step.
"""

from __future__ import annotations

import torch
from torch import nn

from nephroseg.models.registry import register_model

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
HEAD_CHANNELS = 1024
REFINE_CHANNELS = 64


def vgg16_encoder(in_channels: int, width: float) -> nn.Sequential:
    """torchvision's VGG16 ``features`` layout, index for index (conv3×3-ReLU blocks, each ending in
    a max-pool), so that torchvision VGG16 weights load by name; pools are tapped in ``forward``."""
    layers: list[nn.Module] = []
    cin = in_channels
    for block in VGG16_BLOCKS:
        for channels in block:
            cout = max(4, round(channels * width))
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class _Refine(nn.Module):
    """V2's feature-extraction layer after a transposed convolution (scores in, scores out)."""

    def __init__(self, num_classes: int, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_classes, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FCN8s(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, refine: bool = False) -> None:
        super().__init__()
        self.encoder = vgg16_encoder(in_channels, width)
        c3, c4, c5 = (max(4, round(c * width)) for c in (256, 512, 512))
        fc = max(4, round(HEAD_CHANNELS * width))
        self.head = nn.Sequential(
            nn.Conv2d(c5, fc, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(fc, fc, 1),
            nn.ReLU(inplace=True),
        )
        self.score_head = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
        self.up_head = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)
        self.up_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1)
        self.up_final = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4)
        r = max(4, round(REFINE_CHANNELS * width))
        make = (lambda: _Refine(num_classes, r)) if refine else nn.Identity
        self.refine_head, self.refine_pool4, self.refine_final = make(), make(), make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = []
        for layer in self.encoder:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                taps.append(x)
        pool3, pool4, pool5 = taps[2], taps[3], taps[4]
        scores = self.refine_head(self.up_head(self.score_head(self.head(pool5))))
        scores = self.refine_pool4(self.up_pool4(scores + self.score_pool4(pool4)))
        return self.refine_final(self.up_final(scores + self.score_pool3(pool3)))


@register_model(
    "fcn8s_v1",
    input_kind="2d",
    source="003 (FCN-8s on VGG16, V1)",
    description="VGG16 encoder, FCN-8s score fusion of conv7, pool4 and pool3",
    divisor=32,
)
def build_fcn8s_v1(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    return FCN8s(in_channels, num_classes, width, refine=False)


@register_model(
    "fcn8s_v2",
    input_kind="2d",
    source="003 (FCN-8s on VGG16, V2: a convolution after each transposed convolution)",
    description="FCN-8s V1 plus a 3×3 feature-extraction convolution after every up-sampling",
    divisor=32,
)
def build_fcn8s_v2(in_channels: int, num_classes: int, width: float = 1.0) -> nn.Module:
    return FCN8s(in_channels, num_classes, width, refine=True)
