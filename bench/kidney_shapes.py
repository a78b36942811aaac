"""Kidney size and outline of the procedural generator against the real KiTS19 label masks.

    python bench/kidney_shapes.py [--cases 20] [--size 256] [--masks ../shared/kits19]

Generates cases 0 … ``--cases`` − 1 of cohort seed ``--seed`` in memory (the cases ``nephroseg synth``
would write: ``--size``² slices, 1–2.5 mm thick, at least one tumor as the demo draws them) and
measures every kidney with ``nephroseg.synth.measure.kidney_shapes``; does the same for the masks
when present (they are not part of a clone). Prints one row per source. A tumor counts as medial
(toward hilum and spine) when its centroid lies more than a quarter of the kidney's half-width
medial of the kidney's, lateral likewise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--masks", type=Path, default=REPO.parent / "shared" / "kits19")
    args = parser.parse_args()

    from nephroseg.io import read_volume
    from nephroseg.synth import SynthConfig, generate_case
    from nephroseg.synth.measure import KidneyShape, kidney_shapes
    from nephroseg.synth.phantom import seed_sequence

    rows: dict[str, list[KidneyShape]] = {}
    if args.masks.is_dir():
        paths = sorted(args.masks.glob("case_*/segmentation.nii.gz"))
        labels = (read_volume(path, label=True) for path in paths)
        rows["KiTS19 masks"] = [k for label in labels for k in kidney_shapes(label.array, label.spacing)]
    else:
        print(f"no KiTS19 masks at {args.masks}: generator only")
    config = SynthConfig(size=args.size, min_tumors=1, slice_thickness_mm=(1.0, 2.5))
    generated = []
    for index in range(args.cases):
        case = generate_case(seed_sequence(args.seed, index), config)  # case ``index`` of that cohort seed
        generated += kidney_shapes(case.label, case.spacing)
    rows[f"generator ({args.cases} cases, {args.size}²)"] = generated

    header = "source | kidneys | kidney+tumor ml | tumor-free: ml, extents mm | axial solidity [p10, p90]"
    print(f"{header} | tumors: medial / lateral share, median offset (kidney half-widths toward the midline)")
    for source, shapes in rows.items():
        volume = np.array([k.volume_ml for k in shapes])
        free = [k for k in shapes if k.tumor_ml == 0]
        free_ml = np.array([k.kidney_ml for k in free])
        extents = np.array([k.extents_mm for k in free]).reshape(-1, 3)
        solidity = np.array([k.axial_solidity for k in shapes])
        medial = np.array([k.tumor_medial for k in shapes if k.tumor_medial is not None])
        print(
            f"{source} | {len(shapes)} | {volume.mean():.0f} ± {volume.std():.0f} | "
            f"n={len(free)}: {free_ml.mean():.0f} ± {free_ml.std():.0f}, "
            f"{' × '.join(f'{e:.0f}' for e in extents.mean(axis=0))} | "
            f"{solidity.mean():.3f} [{np.percentile(solidity, 10):.3f}, {np.percentile(solidity, 90):.3f}] | "
            f"n={len(medial)}: {np.mean(medial > 0.25):.2f} / {np.mean(medial < -0.25):.2f}, "
            f"{np.median(medial):+.2f}"
        )


if __name__ == "__main__":
    main()
