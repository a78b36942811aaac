"""The 2.5D training sample's geometric augmentation, three ways, as milliseconds per sample in one
run: torchvision v2's chain (``RandomRotation``, ``RandomHorizontalFlip``, ``Pad``,
``RandomResizedCrop``; what training used until 2026-12-02), MONAI's ``Affine`` (one resampling, as a
library transform) and ``nephroseg.data.augment.GeometricAugmentation`` (one ``affine_grid`` +
``grid_sample``), each on a demo sample (3 × 128² image and its label, the demo's augmentation).

    OMP_NUM_THREADS=2 python bench/augment_speed.py [--samples N] [--repeats R]

The three alternate (so that load from other jobs hits all alike); the best repeat of each is printed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.transforms import Affine
from torchvision import tv_tensors
from torchvision.transforms import v2

from nephroseg.data.augment import GeometricAugmentation
from nephroseg.demo import DEMO_PROFILE, DEMO_RECIPE
from nephroseg.recipe import load_recipe

AIR = -1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    recipe = load_recipe(DEMO_RECIPE, profile=DEMO_PROFILE)
    spec, size = recipe.augment, recipe.preprocess.size
    image, label = torch.rand(3, size, size) * 2 - 1, torch.randint(0, 3, (size, size))
    fills = {tv_tensors.Image: AIR, tv_tensors.Mask: 0}
    chain = v2.Compose(
        [
            v2.RandomRotation(spec.rotate_deg, interpolation=v2.InterpolationMode.BILINEAR, fill=fills),
            v2.RandomHorizontalFlip(spec.hflip_p),
            v2.Pad(spec.pad_px, fill=fills),
            v2.RandomResizedCrop((size, size), scale=spec.crop_area, ratio=spec.crop_ratio, antialias=True),
        ]
    )
    ours = GeometricAugmentation(spec, size, AIR)
    rng = np.random.default_rng(0)

    def torchvision_chain() -> None:
        chain(tv_tensors.Image(image), tv_tensors.Mask(label[None]))

    def monai_affine() -> None:
        affine = Affine(
            rotate_params=float(rng.uniform(-0.26, 0.26)),
            scale_params=(float(rng.uniform(0.84, 1.19)),) * 2,
            translate_params=(float(rng.uniform(-8, 8)), float(rng.uniform(-8, 8))),
            padding_mode="zeros",
            image_only=True,
        )
        affine(image - AIR, mode="bilinear")
        affine(label[None].float(), mode="nearest")

    def one_affine() -> None:
        ours(image, label, rng)

    variants = {
        "torchvision v2 chain": torchvision_chain,
        "MONAI Affine": monai_affine,
        "one affine": one_affine,
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.repeats):
        for name, run in variants.items():
            run()  # warm-up
            started = time.perf_counter()
            for _ in range(args.samples):
                run()
            best[name] = min(best[name], (time.perf_counter() - started) / args.samples)
    print(f"threads={torch.get_num_threads()} samples={args.samples} repeats={args.repeats} size={size}")
    for name, seconds in best.items():
        ratio = best["torchvision v2 chain"] / seconds
        print(f"{name}: {1000 * seconds:.2f} ms per sample ({ratio:.2f}x the torchvision chain's speed)")


if __name__ == "__main__":
    main()
