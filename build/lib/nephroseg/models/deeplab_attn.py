"""Seed 001: a normalization U-Net in tandem with an attention DeepLabv3+, trained end to end.

The normalization network (after Drozdzal et al.) is a low-capacity U-Net: contraction by
convolution and max-pooling, expansion by convolution and repeat (nearest) up-sampling, with skip
connections; it maps the 2.5D stack to a learned "normalized" stack of the same shape. The
segmentation network is DeepLabv3+ (segmentation-models-pytorch: ResNet encoder, ASPP with
image-level pooling, decoder) with a self-attention module (SAGAN / non-local style) inserted right
after ASPP. The attention's residual gain starts at zero, so at initialisation the network is plain
DeepLabv3+ and the attention is learned in.
"""

from __future__ import annotations

import torch
from torch import nn

from nephroseg.models.registry import register_model


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class NormalizationUNet(nn.Module):
    """Three levels: conv + max-pool down, conv + repeat up-sampling, concatenated skips."""

    def __init__(self, channels: int, base: int = 16, levels: int = 3) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        cin = channels
        for w in widths:
            self.down.append(_conv(cin, w))
            cin = w
        self.bottom = _conv(cin, cin)
        self.up = nn.ModuleList(
            _conv(cin + w if i == 0 else widths[-i] + w, w) for i, w in enumerate(widths[::-1])
        )
        self.pool = nn.MaxPool2d(2)
        self.repeat = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(widths[0], channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(torch.cat([self.repeat(x), skip], dim=1))
        return self.out(x)


class SelfAttention2d(nn.Module):
    """Every position attends to every other: out = x + gamma · V·softmax(QᵀK); gamma starts at 0."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(1, channels // reduction)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.key(x).flatten(2)  # (B, C', HW)
        attention = torch.softmax(q @ k / q.shape[-1] ** 0.5, dim=-1)  # (B, HW, HW)
        v = self.value(x).flatten(2)  # (B, C, HW)
        return x + self.gamma * (v @ attention.transpose(1, 2)).view(b, c, h, w)


class DeepLabAttention(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, width: float = 1.0, encoder: str = "resnet50"
    ) -> None:
        import segmentation_models_pytorch as smp  # here, not above: it imports timm (0.4 s per command)

        super().__init__()
        self.normalizer = NormalizationUNet(in_channels, base=max(4, round(16 * width)))
        decoder_channels = max(16, round(256 * width / 8) * 8)
        self.segmenter = smp.DeepLabV3Plus(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            decoder_channels=decoder_channels,
        )
        self.attention = SelfAttention2d(decoder_channels)
        self.segmenter.decoder.aspp = nn.Sequential(self.segmenter.decoder.aspp, self.attention)
        self.encoder = self.segmenter.encoder  # where local backbone weights are loaded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter(self.normalizer(x))


@register_model(
    "deeplab_attn",
    input_kind="2.5d",
    source="001 (normalization U-Net + DeepLabv3+ with self-attention after ASPP)",
    description="normalization U-Net in tandem with DeepLabv3+ (ResNet, ASPP, self-attention)",
    divisor=16,
)
def build_deeplab_attn(
    in_channels: int, num_classes: int, width: float = 1.0, encoder: str = "resnet50"
) -> nn.Module:
    return DeepLabAttention(in_channels, num_classes, width, encoder)
