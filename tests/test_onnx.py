"""ONNX export (``nephroseg export-onnx``) and the onnxruntime backend (``predict -m FILE.onnx``)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from test_cli import run_cli

from nephroseg.errors import NephrosegInputError
from nephroseg.inference import Segmenter
from nephroseg.inference.onnx_backend import load_onnx_model
from nephroseg.inference.predict import load_models

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    _, run = trained_run
    target = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    from nephroseg.cli import main

    main(["export-onnx", "-m", str(run), "-o", str(target)])
    return target


def test_onnx_model_carries_the_recipe_and_gives_the_same_probabilities(trained_run, exported: Path) -> None:
    _, run = trained_run
    (torch_model,) = load_models([run], CPU)
    onnx_model = load_onnx_model(exported, CPU)
    assert onnx_model.recipe == torch_model.recipe
    assert onnx_model.network.activations and onnx_model.network.activations > 0
    hu = np.random.default_rng(0).normal(40, 150, size=(5, 40, 48)).astype(np.float32)
    spacing = (3.0, 1.5, 1.5)
    (_, expected), *_ = Segmenter([torch_model]).probabilities(hu, spacing)
    (_, got), *_ = Segmenter([onnx_model]).probabilities(hu, spacing)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_predict_with_the_onnx_file_writes_the_torch_labels(
    trained_run, exported: Path, tmp_path: Path, capsys
) -> None:
    data, run = trained_run
    outputs = {}
    for name, model in (("torch", run), ("onnx", exported)):
        args = ["predict", "-i", str(data), "-o", str(tmp_path / name), "-m", str(model), "--no-progress"]
        code, out, err = run_cli([*args, "--max-memory", "16GB"], capsys)
        assert code == 0 and "wrote 3 segmentation(s)" in out, err
        outputs[name] = np.asarray(nib.load(tmp_path / name / "case_00001.nii.gz").dataobj)
    assert outputs["onnx"].shape == outputs["torch"].shape
    assert float((outputs["onnx"] == outputs["torch"]).mean()) > 0.999  # argmax ties may differ


def test_onnx_refusals(trained_run, exported: Path, tmp_path: Path, capsys) -> None:
    _, run = trained_run
    code, _, err = run_cli(["export-onnx", "-m", str(run), "-o", str(exported)], capsys)
    assert code == 2 and "output exists" in err
    code, _, err = run_cli(["export-onnx", "-m", str(run), "-o", str(tmp_path / "model.pt")], capsys)
    assert code == 2 and "must end in .onnx" in err and not (tmp_path / "model.pt").exists()
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(NephrosegInputError, match="not a readable ONNX model"):
        load_onnx_model(garbage, CPU)
    foreign = tmp_path / "foreign.onnx"
    from onnx import TensorProto, helper, save

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "foreign",
        [tensor("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [tensor("logits", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    save(helper.make_model(graph), foreign)  # a valid ONNX model, not one nephroseg exported
    with pytest.raises(NephrosegInputError, match="without nephroseg's recipe"):
        load_onnx_model(foreign, CPU)
    with pytest.raises(NephrosegInputError, match="run on the CPU"):
        load_onnx_model(exported, torch.device("cuda"))


def test_3d_model_exports_and_segments_like_torch(tmp_path: Path) -> None:
    from test_volumetric import _tiny_model

    from nephroseg.inference.onnx_backend import export_onnx
    from nephroseg.inference.sliding import VolumetricSegmenter

    model = _tiny_model()
    onnx_model = load_onnx_model(export_onnx(model, tmp_path / "tiny3d.onnx", activations=10.0), CPU)
    assert onnx_model.recipe == model.recipe and onnx_model.network.activations == 10.0
    hu = np.random.default_rng(0).normal(40, 150, size=(20, 30, 34)).astype(np.float32)
    expected = VolumetricSegmenter([model]).segment(hu, (2.0, 2.0, 2.0))
    got = VolumetricSegmenter([onnx_model]).segment(hu, (2.0, 2.0, 2.0))
    assert len(np.unique(expected)) > 1  # an untrained net still gives a varied map to compare
    assert float((got == expected).mean()) > 0.999
