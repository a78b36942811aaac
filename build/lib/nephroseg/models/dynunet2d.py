"""nnU-Net's 2d network (MONAI ``DynUNet`` in two dimensions) fed by the 2.5D pipeline.

nnU-Net v2 plans its 2d U-Net as ``PlainConvUNet``: stages of two 3×3 convolutions with instance
norm and leaky ReLU, the first stage at stride 1 and every later one down-sampling by a strided
convolution, 32 features doubled per stage up to 512, transposed-convolution up-sampling. For the
peer bench's 128² patches it plans 6 stages (``docs/benchmarks.md``); 6 is the default here and the
most the registry's size divisor of 32 allows. ``in_channels`` is the recipe's slice count, so the
network sees the same 2.5D stacks as the Res-U-Net and the two can be compared at equal steps.

Options: ``stages`` (2–6); ``deep_supervision`` (auxiliary heads on all but the two coarsest
decoder stages, upsampled to full size by DynUNet); ``base_filters`` 32 and ``max_filters`` 512 as
nnU-Net's 2d plan, scaled by ``width``.
"""

from __future__ import annotations

from torch import nn

from nephroseg.models.dynunet3d import nnunet_style_unet
from nephroseg.models.registry import register_model

MAX_STAGES = 6  # 5 down-samplings: the registered divisor 2**5


@register_model(
    "nnunet2d",
    input_kind="2.5d",
    source="nnU-Net (Isensee et al. 2021): the 2d configuration's U-Net, fed 2.5D stacks",
    description="plain conv U-Net (MONAI DynUNet), instance norm, 32–512 features, strided convs",
    divisor=2 ** (MAX_STAGES - 1),
)
def build_nnunet2d(
    in_channels: int,
    num_classes: int,
    width: float = 1.0,
    stages: int = MAX_STAGES,
    deep_supervision: bool = False,
    base_filters: int = 32,
    max_filters: int = 512,
) -> nn.Module:
    if not 2 <= stages <= MAX_STAGES:
        raise ValueError(f"stages must be 2..{MAX_STAGES} (the size divisor is {2 ** (MAX_STAGES - 1)})")
    strides = [[1, 1]] + [[2, 2]] * (stages - 1)
    kernels = [[3, 3]] * stages
    return nnunet_style_unet(
        in_channels,
        num_classes,
        kernels,
        strides,
        width=width,
        base_filters=base_filters,
        max_filters=max_filters,
        deep_supervision=deep_supervision,
    )
