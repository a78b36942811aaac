"""The Python API of the README (``import nephroseg``): the command line's functions, same results."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_cli import run_cli

import nephroseg


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        nephroseg.trian  # noqa: B018


@pytest.mark.slow
def test_readme_flow_gives_what_the_command_line_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """synthesize → train → predict → evaluate → view through the package, then the same predict and
    evaluate through the command line: the same labels voxel for voxel and the same score."""
    monkeypatch.chdir(tmp_path)
    config = nephroseg.SynthConfig.fast(size=40, slice_thickness_mm=(3.0, 5.0))
    nephroseg.synthesize("data", n_cases=3, seed=0, config=config, progress=False)
    recipe = nephroseg.load_recipe("resunet25d", profile="tiny")
    result = nephroseg.train("data", recipe, "run", progress=False)
    assert result.steps == 2 and result.best_checkpoint == Path("run/checkpoints/best.pt")
    written = nephroseg.predict("data", "labels", ["run"], progress=False)
    assert [p.name for p in written] == [f"case_{i:05d}.nii.gz" for i in range(3)]
    api_score = nephroseg.evaluate("labels", "data").mean["composite_dice"]
    page = nephroseg.view("data/case_00002", "case_00002.html", prediction_path="labels/case_00002.nii.gz")
    assert Path(page).read_text().lstrip().lower().startswith("<!doctype html")

    capsys.readouterr()
    predict = ["predict", "-i", "data", "-o", "cli_labels", "-m", "run", "--no-progress"]
    code, out, err = run_cli(predict, capsys)
    assert code == 0, err
    for path in written:
        ours, theirs = nib.load(path), nib.load(Path("cli_labels") / path.name)
        np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
        np.testing.assert_array_equal(ours.affine, theirs.affine)
    code, out, err = run_cli(["evaluate", "--pred", "cli_labels", "--gt", "data"], capsys)
    assert code == 0, err
    assert f"composite_dice={api_score:.4f}" in out
