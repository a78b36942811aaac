"""Every registered model: forward and backward on tiny input, gradients reach the first layer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nephroseg.models import build_model, model_info, parameter_count, registered_models
from nephroseg.models.resunet25d import ResUNet25D
from nephroseg.recipe import ModelSpec

TINY_OPTIONS = {
    "resunet25d": {"depth": 2},
    "deeplab_attn": {"encoder": "resnet18"},
    "nnunet2d": {"stages": 3},
}


# 3D models (input kind "3d") take (B, C, z, y, x) patches: tested in test_volumetric.py.
@pytest.mark.parametrize(
    "info", [i for i in registered_models() if i.input_kind != "3d"], ids=lambda i: i.name
)
def test_forward_backward_tiny(info) -> None:
    torch.manual_seed(0)
    in_slices = 3 if info.input_kind == "2.5d" else 1
    spec = ModelSpec(
        name=info.name, in_slices=in_slices, width=0.125, options=TINY_OPTIONS.get(info.name, {})
    )
    model = build_model(spec)
    size = max(32, info.divisor)
    x = torch.randn(2, in_slices, size, size)
    target = torch.zeros(2, size, size, dtype=torch.long)
    target[:, 4:20, 6:24] = 1
    target[:, 8:14, 10:16] = 2
    if getattr(model, "trains_with_own_loss", False):
        loss = model.training_loss(x, target)
        model.eval()
        with torch.no_grad():
            assert model(x).shape == (2, 3, size, size)
    else:
        logits = model(x)
        assert logits.shape == (2, 3, size, size)
        loss = torch.nn.functional.cross_entropy(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and float(first.grad.abs().sum()) > 0


def test_resunet25d_full_size_shapes_and_parameter_count() -> None:
    """The seed's network: 3×512×512 in; Conv0 32 ch; encoder to 1024 ch at 1/32; 16 ch at full size."""
    model = ResUNet25D(in_channels=3, num_classes=3)
    assert model.conv0[0].out_channels == 32
    assert [b.body[0].out_channels for b in model.encoder] == [64, 128, 256, 512, 1024]
    assert model.cat_conv[0].in_channels == 16 + 32
    assert parameter_count(model) == 64_307_139
    assert model_info("resunet25d").divisor == model.divisor == 64


def test_resunet25d_output_matches_input_size() -> None:
    model = build_model(ModelSpec(width=0.125)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 128, 192)).shape == (1, 3, 128, 192)


def test_resunet25d_deep_supervision_heads() -> None:
    """Training returns the full-size logits, then one head per finest decoder stage (½, ¼ size);
    evaluation returns the logits alone; without the option the weights are the seed's (no heads)."""
    spec = ModelSpec(width=0.125, options={"depth": 3, "deep_supervision": 2})
    model = build_model(spec)
    outputs = model(torch.zeros(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 64, 96), (2, 3, 32, 48), (2, 3, 16, 24)]
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    plain = build_model(ModelSpec(width=0.125, options={"depth": 3}))
    assert not any(k.startswith("aux_heads") for k in plain.state_dict())
    extra = parameter_count(model) - parameter_count(plain)
    assert extra == (8 * 3 + 3) + (16 * 3 + 3)  # two 1×1 heads on the 8- and 16-channel stages
    with pytest.raises(ValueError, match=r"deep_supervision must be 0\.\.3"):
        ResUNet25D(base=4, depth=3, deep_supervision=4)


def test_every_model_is_registered_by_the_module_named_for_it() -> None:
    from nephroseg.models import MODEL_MODULES

    infos = registered_models()
    assert [i.name for i in infos] == sorted(MODEL_MODULES)
    assert all(i.build.__module__ == MODEL_MODULES[i.name] for i in infos)


def test_unknown_model_and_bad_options() -> None:
    from nephroseg.errors import NephrosegInputError

    with pytest.raises(NephrosegInputError, match="unknown model 'nope'"):
        build_model(ModelSpec(name="nope"))
    with pytest.raises(NephrosegInputError, match=r"model\.options"):
        build_model(ModelSpec(options={"colour": "blue"}))


def test_prediction_does_not_import_the_training_stack() -> None:
    """smp imports timm (0.4 s), MONAI all of itself (3–6 s), torchvision its detection models and
    torch._dynamo (1.5 s): prediction with the 2.5D Res-U-Net, timed against nnU-Net per command,
    must not pay for them."""
    heavy = "{'timm', 'segmentation_models_pytorch', 'nephroseg.training.trainer', 'monai', 'torchvision'}"
    probe = (
        "import sys, nephroseg.inference.predict, nephroseg.cli; from nephroseg.models import model_info; "
        f"model_info('resunet25d'); print(sorted({heavy} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
