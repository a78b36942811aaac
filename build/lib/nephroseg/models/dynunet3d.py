"""3D U-Net of nnU-Net's design (MONAI ``DynUNet``), its depth, kernels and strides planned from the
patch size and voxel spacing as nnU-Net plans them.

Options: ``patch_size`` (z, y, x) and ``spacing`` (z, y, x mm) drive the plan; ``deep_supervision``
adds auxiliary heads on the decoder (training output (B, 1 + heads, C, z, y, x); eval output the main
head only); ``base_filters`` 32 and ``max_filters`` 320 as nnU-Net, scaled by ``width``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from monai.networks.nets import DynUNet
from torch import nn

from nephroseg.models.registry import register_model


@dataclass(frozen=True)
class UNetPlan:
    kernels: list[list[int]]  # one per stage (encoder level)
    strides: list[list[int]]  # one per stage; the first is (1, 1, 1)
    patch_size: tuple[int, int, int]  # the requested patch, padded to a multiple of the total stride

    @property
    def divisor(self) -> tuple[int, int, int]:
        return tuple(int(np.prod([s[a] for s in self.strides])) for a in range(3))  # type: ignore[return-value]


def plan_unet(
    patch_size: tuple[int, ...], spacing: tuple[float, ...], min_feature_map: int = 4, max_pools: int = 6
) -> UNetPlan:
    """nnU-Net's ``get_pool_and_conv_props``: pool an axis while its feature map stays at least
    ``2·min_feature_map`` and its spacing is within a factor 2 of the finest; kernels are 3 along axes
    within a factor 2 of the finest spacing, else 1 (thick slices get in-plane kernels first)."""
    current_spacing = [float(s) for s in spacing]
    current_size = [int(n) for n in patch_size]
    pools = [0, 0, 0]
    kernel = [1, 1, 1]
    strides = [[1, 1, 1]]
    kernels: list[list[int]] = []
    while True:
        valid = [a for a in range(3) if current_size[a] >= 2 * min_feature_map]
        if not valid:
            break
        finest = min(current_spacing[a] for a in valid)
        valid = [a for a in valid if current_spacing[a] / finest < 2 and pools[a] < max_pools]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map:
            break
        if not valid:
            break
        for a in range(3):
            if kernel[a] != 3 and current_spacing[a] / min(current_spacing) < 2:
                kernel[a] = 3
        stride = [1, 1, 1]
        for a in valid:
            stride[a] = 2
            pools[a] += 1
            current_spacing[a] *= 2
            current_size[a] = int(np.ceil(current_size[a] / 2))
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3, 3, 3])  # the bottleneck
    divisor = [2**p for p in pools]
    padded = tuple(int(np.ceil(n / d) * d) for n, d in zip(patch_size, divisor, strict=True))
    return UNetPlan(kernels, strides, padded)  # type: ignore[arg-type]


class DeepSupervisedUNet(nn.Module):
    """DynUNet whose training output is a list (main head first) and eval output one tensor."""

    def __init__(self, net: DynUNet, deep_supervision: bool) -> None:
        super().__init__()
        self.net = net
        self.deep_supervision = deep_supervision

    def forward(self, x):
        out = self.net(x)
        if self.training and self.deep_supervision:
            return list(out.unbind(dim=1))
        return out


@register_model(
    "dynunet3d",
    input_kind="3d",
    source="nnU-Net (Isensee et al. 2021): 3D full-resolution U-Net, KiTS19 winner's baseline",
    description="3D U-Net (MONAI DynUNet), depth/kernels/strides planned from patch and spacing",
    divisor=1,  # the plan pads the patch; sliding-window inference pads the volume
)
def build_dynunet3d(
    in_channels: int = 1,
    num_classes: int = 3,
    width: float = 1.0,
    patch_size: tuple[int, int, int] | list[int] = (128, 128, 128),
    spacing: tuple[float, float, float] | list[float] = (1.0, 1.0, 1.0),
    deep_supervision: bool = True,
    base_filters: int = 32,
    max_filters: int = 320,
) -> nn.Module:
    plan = plan_unet(tuple(patch_size), tuple(spacing))
    return nnunet_style_unet(
        in_channels,
        num_classes,
        plan.kernels,
        plan.strides,
        width=width,
        base_filters=base_filters,
        max_filters=max_filters,
        deep_supervision=deep_supervision,
        max_heads=4,
    )


def nnunet_style_unet(
    in_channels: int,
    num_classes: int,
    kernels: list[list[int]],
    strides: list[list[int]],
    *,
    width: float,
    base_filters: int,
    max_filters: int,
    deep_supervision: bool,
    max_heads: int | None = None,
) -> DeepSupervisedUNet:
    """DynUNet with nnU-Net's blocks (affine instance norm, leaky ReLU 0.01, transposed convolutions
    as up-sampling) and its feature ladder (``base_filters`` doubled per stage up to ``max_filters``,
    scaled by ``width``); its dimension follows the kernels. ``max_heads`` caps the auxiliary heads."""
    filters = [max(2, round(min(base_filters * 2**i, max_filters) * width)) for i in range(len(strides))]
    heads = len(strides) - 2  # DynUNet allows at most (up-sampling layers - 1) auxiliary heads
    heads = heads if max_heads is None else min(heads, max_heads)
    deep = deep_supervision and heads >= 1
    net = DynUNet(
        spatial_dims=len(kernels[0]),
        in_channels=in_channels,
        out_channels=num_classes,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        norm_name=("INSTANCE", {"affine": True}),
        act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        deep_supervision=deep,
        deep_supr_num=max(1, heads),
    )
    return DeepSupervisedUNet(net, deep)
