"""The seed architectures beyond the generic forward/backward test: sizes, the pieces each seed
adds (FCN-8s V2's refinement, seed 001's attention), and loading local weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from nephroseg.errors import NephrosegInputError
from nephroseg.models import build_model, parameter_count
from nephroseg.models.deeplab_attn import DeepLabAttention, SelfAttention2d
from nephroseg.models.weights import load_local_weights
from nephroseg.recipe import ModelSpec


def test_fcn8s_parameter_counts_and_vgg16_encoder() -> None:
    v1 = build_model(ModelSpec(name="fcn8s_v1", in_slices=1))
    v2 = build_model(ModelSpec(name="fcn8s_v2", in_slices=1))
    assert parameter_count(v1) == 20_490_738
    assert parameter_count(v2) == 20_496_699
    # The encoder is VGG16's convolution stack: with 3 input channels, exactly torchvision's count.
    rgb = build_model(ModelSpec(name="fcn8s_v1", in_slices=3))
    vgg = torchvision.models.vgg16(weights=None).features
    assert parameter_count(rgb.encoder) == parameter_count(vgg) == 14_714_688


def test_torchvision_vgg16_weights_load_into_the_fcn_encoder(tmp_path: Path) -> None:
    vgg = torchvision.models.vgg16(weights=None)
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    model = build_model(ModelSpec(name="fcn8s_v2", in_slices=3))
    loaded = load_local_weights(model, path)
    # VGG16's 13 convolutions (weight + bias) hold the same tensors in the same order.
    assert loaded.loaded == 26
    ours = [p for p in model.encoder.parameters()]
    theirs = [p for p in vgg.features.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_linknet_encoder_is_resnet18() -> None:
    model = build_model(ModelSpec(name="linknet_resnet18", in_slices=1))
    resnet = torchvision.models.resnet18(weights=None)
    conv_shapes = [m.weight.shape[1:] for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    theirs = [m.weight.shape[1:] for m in resnet.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv_shapes[1:] == theirs[1:] and conv_shapes[0] == (1, 7, 7)


def test_attention_starts_as_identity_and_learns() -> None:
    torch.manual_seed(0)
    attention = SelfAttention2d(16)
    x = torch.randn(2, 16, 5, 7)
    assert float(attention.gamma.detach()) == 0.0
    torch.testing.assert_close(attention(x), x)
    attention.gamma.data.fill_(1.0)
    assert not torch.allclose(attention(x), x)
    attention(x).square().mean().backward()
    assert attention.query.weight.grad is not None and float(attention.query.weight.grad.abs().sum()) > 0


def test_deeplab_attn_places_attention_after_aspp_on_any_multiple_of_16() -> None:
    model = DeepLabAttention(3, 3, width=0.125, encoder="resnet18")
    assert model.segmenter.decoder.aspp[-1] is model.attention
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 48, 80)).shape == (1, 3, 48, 80)


@pytest.mark.parametrize("name", ["unet", "fcn8s_v1", "linknet_resnet18"])
def test_non_square_inputs_keep_their_size(name: str) -> None:
    model = build_model(ModelSpec(name=name, in_slices=1, width=0.125)).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 96)).shape == (1, 3, 64, 96)


def test_weights_round_trip_into_the_encoder_only(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model(ModelSpec(name="linknet_resnet18", in_slices=1))
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.state_dict(), path)
    torch.manual_seed(2)
    fresh = build_model(ModelSpec(name="linknet_resnet18", in_slices=1))
    loaded = load_local_weights(fresh, path)
    assert loaded.target == "encoder" and loaded.skipped == 0
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(tensor, fresh.encoder.state_dict()[name]), name
    # The rest of the model keeps its own (different) initialisation.
    head = next(iter(source.segmentation_head.parameters()))
    assert not torch.equal(head, next(iter(fresh.segmentation_head.parameters())))


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_weights_with_pickled_code_or_no_match_are_refused(tmp_path: Path) -> None:
    model = build_model(ModelSpec(name="unet", in_slices=1, width=0.125))
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(NephrosegInputError, match="refused"):
        load_local_weights(model, evil)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"nothing.like.this": torch.zeros(3)}, unrelated)
    with pytest.raises(NephrosegInputError, match="no tensor matches"):
        load_local_weights(model, unrelated)
    with pytest.raises(NephrosegInputError, match="not found"):
        load_local_weights(model, tmp_path / "missing.pt")
