"""Which epoch becomes the best checkpoint: the peak of the moving average of the validation
score (``train.val_smoothing``, on ``train.select_on``), not a lucky early epoch of a noisy raw score."""

from __future__ import annotations

import pytest

from nephroseg.errors import NephrosegInputError
from nephroseg.recipe import TrainSpec, load_recipe
from nephroseg.training.session import Session

SCORES = (0.40, 0.60, 0.45, 0.55, 0.58, 0.57)  # raw peak at epoch 1


def _record(session: Session, epoch: int, score: float, spec: TrainSpec) -> bool:
    """One validation whose kidney+tumor Dice is ``score`` and composite half of it."""
    session.epoch = epoch
    return session.record_validation({"val_composite_dice": score / 2, "val_kidney_tumor_dice": score}, spec)


def _chosen(smoothing: float) -> Session:
    session = Session(None, None, None, seed=0)  # type: ignore[arg-type]
    spec = TrainSpec(val_smoothing=smoothing, select_on="kidney_tumor")
    for epoch, score in enumerate(SCORES):
        _record(session, epoch, score, spec)
    return session


def test_best_epoch_is_where_the_moving_average_peaks() -> None:
    # smoothing 0.5: 0.40, 0.50, 0.475, 0.5125, 0.54625, 0.558125: still rising at the last epoch.
    session = _chosen(0.5)
    assert session.best_epoch == 5
    assert session.best_score == 0.285  # the composite Dice that checkpoint itself scored
    assert session.best_smoothed == pytest.approx(0.558125)
    assert session.smoothed_score == pytest.approx(0.558125)


def test_no_smoothing_takes_the_raw_peak() -> None:
    session = _chosen(0.0)
    assert (session.best_epoch, session.best_score) == (1, 0.30)


def test_a_falling_average_keeps_the_earlier_checkpoint() -> None:
    session = Session(None, None, None, seed=0)  # type: ignore[arg-type]
    spec = TrainSpec(val_smoothing=0.5)  # on the composite Dice, half the score here
    chosen = [_record(session, epoch, score, spec) for epoch, score in enumerate((1.6, 1.8, 0.4))]
    assert chosen == [True, True, False]  # averages 0.8, 0.85, 0.525
    assert (session.best_epoch, session.best_score) == (1, 0.9)
    assert session.best_smoothed == pytest.approx(0.85)


def test_smoothing_is_per_epoch_when_validation_skips_epochs() -> None:
    """Validated at epochs 1, 3 and 4 (``val_every=2`` over 5 epochs): the previous average weighs
    0.5² two epochs on and 0.5 one epoch on, as if every epoch had been validated at that score."""
    session = Session(None, None, None, seed=0)  # type: ignore[arg-type]
    spec = TrainSpec(val_smoothing=0.5, val_every=2, select_on="kidney_tumor")
    for epoch, score in ((1, 0.40), (3, 0.80), (4, 0.20)):
        _record(session, epoch, score, spec)
        if epoch == 3:
            assert session.smoothed_score == pytest.approx(0.25 * 0.40 + 0.75 * 0.80)
    assert session.smoothed_score == pytest.approx(0.5 * 0.70 + 0.5 * 0.20)
    assert (session.best_epoch, session.smoothed_epoch) == (3, 4)


def test_recipes_default_to_nnunets_smoothing_and_refuse_one() -> None:
    train = load_recipe("resunet25d", profile="tiny").train
    assert (train.val_smoothing, train.select_on) == (0.9, "composite")
    assert load_recipe("resunet25d", profile="demo_coarse").train.select_on == "kidney_tumor"
    with pytest.raises(NephrosegInputError, match=r"val_smoothing.*less than 1"):
        load_recipe("resunet25d", profile="tiny", overrides=["train.val_smoothing=1"])
