"""ONNX export of a trained model and an onnxruntime backend for it.

``export_onnx`` writes the network with dynamic batch and spatial sizes and stores the recipe in
the file's metadata, so a ``.onnx`` file alone is a model: ``nephroseg predict -m model.onnx`` reads
it back as a ``SegmentationModel`` whose network runs in onnxruntime on the CPU, and everything
around it (resampling, 2.5D stacks or sliding windows, ensembles, writing) is unchanged.
On the demo network onnxruntime ran the forward pass 1.6× faster than torch (docs/benchmarks.md).
"""

from __future__ import annotations

import io
import json
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nephroseg.errors import NephrosegInputError
from nephroseg.inference.segmenter import SegmentationModel
from nephroseg.io import atomic_path
from nephroseg.models import model_info
from nephroseg.recipe import Recipe

ONNX_FORMAT = "nephroseg.onnx.v1"
_META_FORMAT, _META_RECIPE, _META_ACTIVATIONS = (
    "nephroseg.format",
    "nephroseg.recipe",
    "nephroseg.activations",
)


def example_input(model: SegmentationModel) -> torch.Tensor:
    """A valid input for tracing: one 2.5D stack at the recipe's size, or one 3D patch."""
    recipe = model.recipe
    if model_info(recipe.model.name).input_kind == "3d":
        return torch.zeros((1, recipe.model.in_slices, *recipe.volumetric.patch_size))  # type: ignore[union-attr]
    side = -(-recipe.preprocess.size // model.divisor) * model.divisor
    return torch.zeros((1, recipe.model.in_slices, side, side))


def export_onnx(model: SegmentationModel, target: str | Path, activations: float | None = None) -> Path:
    """Write ``model`` as ONNX (opset chosen by torch's exporter), atomically; batch and spatial axes
    are dynamic. ``activations`` (layer outputs per input pixel, for ``--max-memory``) is stored
    with the recipe, as the runtime cannot count them."""
    target = Path(target)
    if target.suffix != ".onnx":
        raise NephrosegInputError(target, "an ONNX model file must end in .onnx")
    if model_info(model.recipe.model.name).input_kind == "instances":
        raise NephrosegInputError("--model", "Mask R-CNN (instance output) cannot be exported to ONNX here")
    network = model.network.cpu().eval()
    example = example_input(model)
    spatial = {axis: torch.export.Dim.DYNAMIC for axis in range(2, example.ndim)}
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC, **spatial},),
            verbose=False,
        )
    proto = program.model_proto
    metadata = {
        _META_FORMAT: ONNX_FORMAT,
        _META_RECIPE: json.dumps(model.recipe.model_dump(mode="json")),
        _META_ACTIVATIONS: "" if activations is None else repr(float(activations)),
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(target) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return target


def export_run(model: str | Path, target: str | Path, overwrite: bool = False) -> Path:
    """``nephroseg export-onnx``: a run folder's best checkpoint (or a checkpoint file) as ONNX."""
    from nephroseg.inference.guards import activations_per_pixel, activations_per_voxel
    from nephroseg.training.checkpoint import load_checkpoint, resolve_checkpoint

    target = Path(target)
    if target.is_dir():
        raise NephrosegInputError(target, "is a folder; --out names the .onnx file to write")
    if target.exists() and not overwrite:
        raise NephrosegInputError(target, "output exists; pass --overwrite to replace it")
    cpu = torch.device("cpu")
    loaded = SegmentationModel.from_checkpoint(load_checkpoint(resolve_checkpoint(model), cpu), cpu)
    if model_info(loaded.recipe.model.name).input_kind == "3d":
        activations = activations_per_voxel(loaded.network)
    else:
        activations = activations_per_pixel(loaded.network, loaded.recipe.model.in_slices, loaded.divisor)
    return export_onnx(loaded, target, activations)


class OnnxNetwork(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` call the segmenters make: tensor in, logits out."""

    def __init__(self, path: Path, threads: int | None = None, activations: float | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.activations = activations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = np.ascontiguousarray(x.detach().float().cpu().numpy())
        (logits,) = self.session.run(None, {self.input_name: image})
        return torch.from_numpy(logits)


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix == ".onnx" and Path(path).is_file()


def load_onnx_model(path: str | Path, device: torch.device) -> SegmentationModel:
    """A ``SegmentationModel`` from a file ``export_onnx`` wrote; refused when it is not one."""
    path = Path(path)
    if device.type != "cpu":
        raise NephrosegInputError(path, f"ONNX models run on the CPU (onnxruntime), not on {device.type}")
    try:
        network = OnnxNetwork(path)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        raise NephrosegInputError(path, f"not a readable ONNX model ({str(err).splitlines()[0]})") from err
    meta = network.session.get_modelmeta().custom_metadata_map
    if meta.get(_META_FORMAT) != ONNX_FORMAT or _META_RECIPE not in meta:
        raise NephrosegInputError(path, "an ONNX model without nephroseg's recipe (export it with nephroseg)")
    recipe = Recipe.model_validate(json.loads(meta[_META_RECIPE]))
    network.activations = float(meta[_META_ACTIVATIONS]) if meta.get(_META_ACTIVATIONS) else None
    return SegmentationModel(network.eval(), recipe)
