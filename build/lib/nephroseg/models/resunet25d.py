"""Seed 004's 2.5D Res-U-Net (after SalsaNext): residual stride-2 encoder, PixelShuffle decoder.

Conv0 (3×3, BN, LeakyReLU, 32 ch) → five ResDownSample blocks (each halves H and W and doubles the
channels) → Connector (Conv0-like, stride 2) → PixelShuffle up-sampling (×2 in size, ÷4 in channels),
each joined with the matching ResDownSample output after a 1×1 channel reduction by a CatResBlock →
a last PixelShuffle to full size, giving 16 channels, concatenated with Conv0's output by CatConv →
1×1 classifier.

The report draws five up-sampling stages but its Connector also halves the size, so six halvings
must be undone: the sixth (full-size) up-sampling feeds CatConv. The Connector doubles the channels
like every encoder stage, which makes the full-size decoder output 16 channels, as the report says.

``deep_supervision=k`` (not in the report; nnU-Net's 2d set-up has it) adds 1×1 classifiers on the
last ``k`` decoder stages (½, ¼, … of the input size): in training the model then returns a list,
the full-size logits first, for a deep-supervision loss; in evaluation it returns the logits alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nephroseg.models.registry import register_model

SLOPE = 0.01  # LeakyReLU negative slope (PyTorch's default; the report does not state one)


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
    ]


class ConvBlock(nn.Sequential):
    """Conv0 (stride 1) and Connector (stride 2): 3×3 conv, BN, LeakyReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(*_conv_bn(cin, cout, stride), nn.LeakyReLU(SLOPE, inplace=True))


class ResDownSample(nn.Module):
    """3×3 stride-2 conv, BN, LeakyReLU, 3×3 conv, BN; plus a stride-2 1×1 shortcut; add; LeakyReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, 2), nn.LeakyReLU(SLOPE, inplace=True), *_conv_bn(cout, cout)
        )
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 2, kernel=1))
        self.act = nn.LeakyReLU(SLOPE, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class CatResBlock(nn.Module):
    """Concatenate up-sampled and skip features; conv-BN-LReLU-conv-BN; add the concatenation; LReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(channels, channels), nn.LeakyReLU(SLOPE, inplace=True), *_conv_bn(channels, channels)
        )
        self.act = nn.LeakyReLU(SLOPE, inplace=True)

    def forward(self, up: Tensor, skip: Tensor) -> Tensor:
        joined = torch.cat([up, skip], dim=1)
        return self.act(self.body(joined) + joined)


class DecoderStage(nn.Module):
    """PixelShuffle ×2, then CatResBlock with the 1×1-reduced encoder output of the same size."""

    def __init__(self, cin: int, skip_channels: int) -> None:
        super().__init__()
        up_channels = cin // 4
        self.up = nn.PixelShuffle(2)
        self.reduce = nn.Conv2d(skip_channels, up_channels, 1, bias=False)
        self.block = CatResBlock(2 * up_channels)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.block(self.up(x), self.reduce(skip))


class ResUNet25D(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base: int = 32,
        depth: int = 5,
        deep_supervision: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= deep_supervision <= depth:
            raise ValueError(f"deep_supervision must be 0..{depth} (decoder stages), got {deep_supervision}")
        if base % 4:
            raise ValueError("base channels must be a multiple of 4 (PixelShuffle divides channels by 4)")
        widths = [base * 2**i for i in range(depth + 1)]  # 32, 64, ..., 1024
        self.conv0 = ConvBlock(in_channels, widths[0])
        self.encoder = nn.ModuleList(ResDownSample(widths[i], widths[i + 1]) for i in range(depth))
        bottom = widths[-1] * 2
        self.connector = ConvBlock(widths[-1], bottom, stride=2)
        stages, stage_channels, channels = [], [], bottom
        for skip in reversed(widths[1:]):
            stages.append(DecoderStage(channels, skip))
            channels = 2 * (channels // 4)
            stage_channels.append(channels)
        self.decoder = nn.ModuleList(stages)
        # Heads on the finest decoder stages, finest first (½ size, then ¼, …).
        self.deep_supervision = deep_supervision
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(c, num_classes, 1) for c in reversed(stage_channels[depth - deep_supervision :])
        )
        self.final_up = nn.PixelShuffle(2)
        self.cat_conv = ConvBlock(channels // 4 + widths[0], widths[0])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.divisor = 2 ** (depth + 1)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        first = self.conv0(x)
        skips, h = [], first
        for block in self.encoder:
            h = block(h)
            skips.append(h)
        h = self.connector(h)
        supervised = self.training and self.deep_supervision
        decoded = []  # kept only when trained with deep supervision: inference frees each stage
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            h = stage(h, skip)
            if supervised:
                decoded.append(h)
        h = self.cat_conv(torch.cat([self.final_up(h), first], dim=1))
        logits = self.classifier(h)
        if not supervised:
            return logits
        finest = decoded[::-1][: self.deep_supervision]
        return [logits, *(head(f) for head, f in zip(self.aux_heads, finest, strict=True))]


@register_model(
    "resunet25d",
    input_kind="2.5d",
    source="004 (2.5D Res-U-Net with PixelShuffle, weighted CE + Lovász-Softmax)",
    description="residual U-Net, 3 adjacent slices in, PixelShuffle up-sampling",
    divisor=64,
)
def build_resunet25d(
    in_channels: int, num_classes: int, width: float = 1.0, depth: int = 5, deep_supervision: int = 0
) -> nn.Module:
    base = max(4, round(32 * width / 4) * 4)
    return ResUNet25D(in_channels, num_classes, base=base, depth=depth, deep_supervision=deep_supervision)
