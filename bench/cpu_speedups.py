"""CPU speed-ups for the demo-width 2.5D network, as ratios in one run: float32 against bfloat16
autocast (training step and inference), and torch against onnxruntime (inference, the network
exported by ``nephroseg.inference.onnx_backend.export_onnx``); and float32 against bfloat16 for the
``nnunet3d`` quick profile's 3D network (a batch of two 48×96×96 windows, as the sliding windows run);
and Adam's step as PyTorch's per-parameter loop against the fused one that training uses.

    OMP_NUM_THREADS=1 python bench/cpu_speedups.py

Alternates the variants (so that load from other jobs hits all alike) and prints seconds per
training step and per inference forward pass.
"""

from __future__ import annotations

import time

import torch

from nephroseg.models import build_model
from nephroseg.recipe import ModelSpec


def main(repeats: int = 4, steps: int = 4) -> None:
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=0.25))
    images, labels = torch.randn(8, 3, 128, 128), torch.randint(0, 3, (8, 128, 128))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3, fused=True)
    adams = {
        "adam loop": torch.optim.Adam(model.parameters(), 1e-3, foreach=False),
        "adam fused": optimizer,
    }

    def train_step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"train fp32": [], "train bf16": [], "infer fp32": [], "infer bf16": []}
    timings.update({"infer onnxruntime": [], "infer3d fp32": [], "infer3d bf16": []})
    timings.update({name: [] for name in adams})
    batch = torch.randn(16, 3, 192, 192)
    options = {"patch_size": [48, 96, 96], "spacing": [2.5, 2.5, 2.5]}
    network3d = build_model(ModelSpec(name="dynunet3d", in_slices=1, width=0.25, options=options)).eval()
    windows = torch.randn(2, 1, 48, 96, 96)
    onnx_network = _exported(model)
    for _ in range(repeats):
        onnx_network(batch)
        started = time.perf_counter()
        onnx_network(batch)
        timings["infer onnxruntime"].append(time.perf_counter() - started)
        for bf16 in (False, True):
            name = "bf16" if bf16 else "fp32"
            model.train()
            train_step(bf16)
            started = time.perf_counter()
            for _ in range(steps):
                train_step(bf16)
            timings[f"train {name}"].append((time.perf_counter() - started) / steps)
            model.eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(batch)
                started = time.perf_counter()
                model(batch)
                timings[f"infer {name}"].append(time.perf_counter() - started)
                network3d(windows)
                started = time.perf_counter()
                network3d(windows)
                timings[f"infer3d {name}"].append(time.perf_counter() - started)
        for name, adam in adams.items():  # the gradients of the last training step, stepped again
            adam.step()
            started = time.perf_counter()
            for _ in range(steps):
                adam.step()
            timings[name].append((time.perf_counter() - started) / steps)
    for name, values in timings.items():
        print(f"{name}: " + " ".join(f"{v:.3f}" for v in values) + " s")
    for kind in ("train", "infer", "infer3d"):
        ratio = min(timings[f"{kind} fp32"]) / min(timings[f"{kind} bf16"])
        print(f"{kind}_speedup_bf16={ratio:.2f}")
    print(f"infer_speedup_onnxruntime={min(timings['infer fp32']) / min(timings['infer onnxruntime']):.2f}")
    print(f"adam_speedup_fused={min(timings['adam loop']) / min(timings['adam fused']):.2f}")


def _exported(model: torch.nn.Module):
    """The network as ``nephroseg export-onnx`` writes it, run by the onnxruntime backend."""
    import tempfile
    from pathlib import Path

    from nephroseg.inference.onnx_backend import OnnxNetwork, export_onnx
    from nephroseg.inference.segmenter import SegmentationModel
    from nephroseg.recipe import load_recipe

    folder = Path(tempfile.mkdtemp())
    recipe = load_recipe("resunet25d", profile="quick")
    path = export_onnx(SegmentationModel(model.eval(), recipe), folder / "demo.onnx")
    return OnnxNetwork(path, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
