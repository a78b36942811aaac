"""Does a 2.5D model lose accuracy on thin slices? The same cases at their own spacing and thinned.

    python bench/slice_spacing.py --data bench_out/painted_thin --model demo_out/run \
        --coarse-model demo_out/run_coarse [--target-mm 3.0] [--out bench_out/slice_spacing]

The 2.5D stacks take adjacent slices whatever their spacing, so a model trained on 2.5-5 mm sees
neighbours 0.5 mm apart on a 0.5 mm scan. Each case of ``--data`` (KiTS layout, with segmentations)
is predicted as it is, and again after keeping every n-th slice of image and mask (n = the nearest
whole number to ``--target-mm`` / slice spacing: the same voxels in-plane, thicker steps); both
predictions are scored on the slices kept, so the comparison is paired voxel for voxel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np

from nephroseg.inference import predict
from nephroseg.io import labelled_cases, read_volume, write_array
from nephroseg.metrics import case_metrics


def thin_out(case_dir: Path, out_dir: Path, target_mm: float) -> int:
    """Write every n-th slice of the case's image and mask (KiTS axis 0) into ``out_dir``; return n."""
    step = 1
    for name, dtype in (("imaging", np.int16), ("segmentation", np.uint8)):
        image = nib.load(case_dir / f"{name}.nii.gz")
        step = max(1, round(target_mm / float(np.linalg.norm(image.affine[:3, 0]))))
        affine = image.affine.copy()
        affine[:3, 0] *= step
        array = np.asarray(image.dataobj)[::step]
        write_array(array, affine, out_dir / case_dir.name / f"{name}.nii.gz", dtype)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="KiTS-layout cases with segmentations.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--coarse-model", type=Path, default=None)
    parser.add_argument("--target-mm", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("bench_out/slice_spacing"))
    args = parser.parse_args()
    thinned = args.out / "thinned"
    steps = {
        case.case_id: thin_out(case.folder, thinned, args.target_mm) for case in labelled_cases(args.data)
    }
    coarse = [args.coarse_model] if args.coarse_model else None
    for source, target in ((args.data, args.out / "pred_native"), (thinned, args.out / "pred_thinned")):
        predict(source, target, [args.model], coarse_models=coarse, overwrite=True, progress=True)
    scores = []
    print("case        step  native: kidney+tumor tumor composite | thinned: kidney+tumor tumor composite")
    for case_id, step in steps.items():
        truth = read_volume(thinned / case_id / "segmentation.nii.gz", label=True).array
        native = read_volume(args.out / "pred_native" / f"{case_id}.nii.gz", label=True).array[::step]
        thin = read_volume(args.out / "pred_thinned" / f"{case_id}.nii.gz", label=True).array
        pair = [case_metrics(native, truth), case_metrics(thin, truth)]
        scores.append([m["composite_dice"] for m in pair])
        cells = [f"{m[k]:.3f}" for m in pair for k in ("kidney_tumor_dice", "tumor_dice", "composite_dice")]
        print(f"{case_id}  {step:4d}  {' '.join(cells[:3])} | {' '.join(cells[3:])}")
    mean = np.mean(scores, axis=0)
    print(f"mean composite: native {mean[0]:.4f} thinned {mean[1]:.4f} ({len(scores)} cases)")


if __name__ == "__main__":
    main()
