"""nephroseg: kidney and kidney-tumor segmentation in abdominal CT (KiTS19).

The Python API and the command line are the same functions::

    import nephroseg
    nephroseg.synthesize("data", n_cases=10, seed=0, config=nephroseg.SynthConfig(size=192))
    run = nephroseg.train("data", nephroseg.load_recipe("resunet25d", profile="demo_coarse"), "run")
    nephroseg.predict("scans/", "labels/", ["run"])
    nephroseg.evaluate("labels/", "data/").mean["composite_dice"]
    nephroseg.view("data/case_00003", "case_00003.html", prediction_path="labels/case_00003.nii.gz")

Attributes are imported on first use so that ``import nephroseg`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "NephrosegInputError": ("nephroseg.errors", "NephrosegInputError"),
    "SynthConfig": ("nephroseg.synth", "SynthConfig"),
    "synthesize": ("nephroseg.synth", "synthesize_cohort"),
    "load_recipe": ("nephroseg.recipe", "load_recipe"),
    "train": ("nephroseg.training", "train"),
    "predict": ("nephroseg.inference", "predict"),
    "evaluate": ("nephroseg.metrics", "evaluate_folders"),
    "report": ("nephroseg.report.build", "build_report"),
    "view": ("nephroseg.report.viewer", "view_case"),
    "run_demo": ("nephroseg.demo", "run_demo"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'nephroseg' has no attribute '{name}'")
    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)
