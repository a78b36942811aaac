"""nnU-Net's 2d network in the 2.5D pipeline: nnU-Net's plan to the parameter and deep supervision
with full-size heads (its tiny training: tests/test_deep_supervision_25d.py)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from nephroseg.losses import build_loss
from nephroseg.models import build_model, model_info, parameter_count
from nephroseg.recipe import ModelSpec, TrainSpec


def _hand_count(filters: list[int], in_channels: int, num_classes: int) -> int:
    """Two 3×3 convolutions per stage, each followed by an affine instance norm (the convolutions
    carry no bias: nnU-Net's biases before instance norm are redundant); 2×2 transposed convolutions
    up; a decoder stage sees the up-sampled map and the skip; one 1×1 head with bias."""
    count, c_in = 0, in_channels
    for c in filters:
        count += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c
        c_in = c
    for low, high in itertools.pairwise(filters):
        count += 4 * high * low + 9 * 2 * low * low + 2 * low + 9 * low * low + 2 * low
    return count + filters[0] * num_classes + num_classes


def test_full_size_network_is_nnunets_plan_for_128_patches() -> None:
    """nnU-Net v2 plans 6 stages of 32–512 features for 128² (the peer bench's nnUNetPlans.json);
    its PlainConvUNet has 20,620,079 parameters for one input channel, 8,876 more than this one:
    5,999 biases and 2,976 weights of heads unused without deep supervision, less our head's 99."""
    model = build_model(ModelSpec(name="nnunet2d", in_slices=1))
    filters = [32, 64, 128, 256, 512, 512]
    assert list(model.net.filters) == filters
    assert parameter_count(model) == _hand_count(filters, 1, 3) == 20_620_079 - 5_999 - 2_976 + 99
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 2 * 6 + 2 * 5 and all(n.affine for n in norms)
    assert {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)} == {0.01}
    assert model_info("nnunet2d").divisor == 32 and model_info("nnunet2d").input_kind == "2.5d"
    stacked = build_model(ModelSpec(name="nnunet2d", in_slices=3))
    assert parameter_count(stacked) - parameter_count(model) == 2 * 9 * 32  # two more input channels


def test_deep_supervision_heads_are_full_size_in_training_only() -> None:
    spec = ModelSpec(
        name="nnunet2d", in_slices=3, width=0.125, options={"stages": 4, "deep_supervision": True}
    )
    model = build_model(spec)
    outputs = model(torch.zeros(2, 3, 32, 48))
    assert isinstance(outputs, list) and [tuple(o.shape) for o in outputs] == [(2, 3, 32, 48)] * 3
    assert model.deep_supervision
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 32, 48)
    plain = build_model(ModelSpec(name="nnunet2d", in_slices=3, width=0.125, options={"stages": 4}))
    assert not plain.deep_supervision and plain(torch.zeros(2, 3, 32, 48)).shape == (2, 3, 32, 48)
    with pytest.raises(ValueError, match=r"stages must be 2\.\.6"):
        build_model(ModelSpec(name="nnunet2d", options={"stages": 7}))


def test_deep_supervision_loss_on_full_size_heads() -> None:
    """Full-size heads take the labels unchanged; weights 1 and ½, normalized."""
    spec = TrainSpec(loss="ce")
    torch.manual_seed(0)
    main, aux = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8))
    expected = (
        nn.functional.cross_entropy(main, labels) + 0.5 * nn.functional.cross_entropy(aux, labels)
    ) / 1.5
    assert torch.allclose(build_loss(spec, 3, deep_supervision=True)([main, aux], labels), expected)
