"""float32 against bfloat16 autocast for the demo-width 2.5D network on this CPU, as ratios in one run.

    OMP_NUM_THREADS=1 python bench/cpu_speedups.py

Alternates the two precisions (so that load from other jobs hits both alike) and prints seconds per
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
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def train_step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    timings: dict[str, list[float]] = {"train fp32": [], "train bf16": [], "infer fp32": [], "infer bf16": []}
    batch = torch.randn(16, 3, 192, 192)
    for _ in range(repeats):
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
    for name, values in timings.items():
        print(f"{name}: " + " ".join(f"{v:.3f}" for v in values) + " s")
    for kind in ("train", "infer"):
        ratio = min(timings[f"{kind} fp32"]) / min(timings[f"{kind} bf16"])
        print(f"{kind}_speedup_bf16={ratio:.2f}")


if __name__ == "__main__":
    main()
