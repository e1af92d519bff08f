"""A resumed tuning's "best so far" starts from the trials told in earlier sessions, as
Optuna's ``study.best_value`` does (it started from nothing, flagging worse trials)."""

from __future__ import annotations

import optuna
import pytest

from reglab.tune.runner import _best_told


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_told_is_optuna_s_best_value_whatever_the_other_states(direction):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    assert _best_told(study, direction) is None
    for value in (0.4, 0.7, 0.2):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # running: asked, not told
    assert _best_told(study, direction) == study.best_value == (
        0.7 if direction == "maximize" else 0.2)
