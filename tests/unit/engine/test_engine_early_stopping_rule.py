"""reglab.engine.early_stopping: Keras 3's EarlyStopping decision on scripted sequences.

Every expectation below is worked out by hand from Keras 3's ``on_epoch_end``:

    if current is None or epoch < start_from_epoch: return
    if restore_best_weights and best_weights is None: snapshot; best_epoch = epoch
    wait += 1
    if monitor_op(current - min_delta, best):          # min_delta negated in 'min' mode
        best, best_epoch = current, epoch; snapshot if restore_best_weights
        if baseline is None or monitor_op(current - min_delta, baseline): wait = 0
        return
    if wait >= patience and epoch > 0: stop
"""

from __future__ import annotations

import math
import warnings

import pytest

from reglab.engine import EarlyStoppingRule, EarlyStoppingState, is_improvement
from reglab.errors import ConfigError


def run(rule, values, monitor=None, maximized=()):
    """Feeds ``values`` epoch by epoch until a stop; returns (decisions, state)."""
    state = EarlyStoppingState.start(rule, maximized)
    decisions = []
    for epoch, value in enumerate(values):
        decision = state.update(epoch, {monitor or rule.monitor: value})
        decisions.append(decision)
        if decision[1]:
            break
    return decisions, state


def stop_epoch(rule, values, **kwargs):
    decisions, _ = run(rule, values, **kwargs)
    return next((e for e, (_, stop) in enumerate(decisions) if stop), None)


# -- patience -------------------------------------------------------------------------------
@pytest.mark.parametrize("patience, values, expected", [
    # epoch 0 is the first value (best None); epoch 2 is the first without improvement.
    (0, [1.0, 0.9, 0.95, 0.8], 2),
    # wait: 0, 1, 2 -> stops at epoch 2 when patience is 2.
    (2, [1.0, 1.1, 1.2, 1.3], 2),
    # an improvement at epoch 2 resets wait: 0, 1, 0, 1, 2 -> epoch 4.
    (2, [1.0, 1.1, 0.9, 1.0, 1.0, 1.0], 4),
    # equal is not better: wait 0, 1, 2, 3 -> epoch 3 with patience 3.
    (3, [1.0, 1.0, 1.0, 1.0, 1.0], 3),
    # never worse: never stops.
    (1, [5.0, 4.0, 3.0, 2.0, 1.0], None),
])
def test_patience(patience, values, expected):
    assert stop_epoch(EarlyStoppingRule(patience=patience), values) == expected


@pytest.mark.parametrize("mode, values, stop, best_epoch", [
    # Keras 3 starts best at None: the first value is the best whatever it is, NaN too, and
    # nothing compares better than NaN afterwards (reglab once started at +-inf and waited
    # for the first finite value: stopped at 4 here, the best epoch 2)
    ("min", [math.nan, 1.0, 0.9, 0.95, 0.9, 0.8], 2, 0),
    ("max", [math.nan, 0.5, 0.6, 0.7], 2, 0),
    # +inf first in 'min' mode: the best until a finite value beats it
    ("min", [math.inf, 1.0, 1.1, 1.2, 1.3], 3, 1),
    ("max", [-math.inf, 0.5, 0.4, 0.4, 0.4], 3, 1),
])
def test_the_first_value_is_the_best_whatever_it_is(mode, values, stop, best_epoch):
    decisions, state = run(EarlyStoppingRule(patience=2, mode=mode), values)
    assert len(decisions) - 1 == stop and decisions[-1][1]
    assert state.best_epoch == best_epoch


def test_stopped_epoch_and_best_epoch_are_recorded():
    # patience 2: e0, e1 improve; e2 wait 1; e3 wait 2 -> stop at 3 (e4 is never seen).
    decisions, state = run(EarlyStoppingRule(patience=2), [3.0, 2.0, 2.5, 2.25, 1.0])
    assert [stop for _, stop in decisions] == [False, False, False, True]
    assert state.stopped_epoch == 3 and state.best_epoch == 1 and state.best == 2.0
    assert state.wait == 2


# -- min_delta ------------------------------------------------------------------------------
def test_min_delta_requires_strict_improvement_beyond_it():
    rule = EarlyStoppingRule(min_delta=0.25, patience=0)
    # 0.75 + 0.25 < 1.0 is false: exactly min_delta better is no improvement -> stop at 1.
    assert stop_epoch(rule, [1.0, 0.75]) == 1
    # 0.5 + 0.25 < 1.0: an improvement; then 0.375 + 0.25 < 0.5 is false -> stop at 2.
    assert stop_epoch(rule, [1.0, 0.5, 0.375]) == 2
    decisions, state = run(rule, [1.0, 0.5, 0.375])
    assert state.best == 0.5  # the unimproved value does not become best


def test_min_delta_sign_is_ignored_and_applies_in_max_mode():
    rule = EarlyStoppingRule(monitor="val_accuracy", min_delta=-0.125, patience=0)
    assert rule.min_delta == 0.125
    # max mode: 0.625 - 0.125 > 0.5 is false -> stop at epoch 1; 0.75 - 0.125 > 0.5 is true.
    assert stop_epoch(rule, [0.5, 0.625]) == 1
    assert stop_epoch(rule, [0.5, 0.75, 0.75]) == 2


# -- mode -----------------------------------------------------------------------------------
@pytest.mark.parametrize("monitor, mode, expected", [
    ("val_loss", "auto", "min"), ("loss", "auto", "min"), ("val_accuracy", "auto", "max"),
    ("accuracy", "auto", "max"), ("val_sparse_categorical_accuracy", "auto", "max"),
    ("val_accuracy", "min", "min"), ("val_loss", "max", "max"),
])
def test_mode_resolution(monitor, mode, expected):
    assert EarlyStoppingRule(monitor=monitor, mode=mode).direction() == expected
    state = EarlyStoppingState.start(EarlyStoppingRule(monitor=monitor, mode=mode))
    assert state.mode == expected and state.best is None  # Keras 3: None until a value


def test_mode_max_and_min_on_the_same_sequence():
    values = [0.5, 0.625, 0.5625, 0.75]
    # max: 0.625 improves, 0.5625 does not (wait 1 >= 0) -> epoch 2.
    assert stop_epoch(EarlyStoppingRule(monitor="val_accuracy", patience=0), values) == 2
    assert stop_epoch(EarlyStoppingRule(monitor="val_accuracy", mode="max", patience=0),
                      values) == 2
    # min: 0.625 is worse than 0.5 -> epoch 1.
    assert stop_epoch(EarlyStoppingRule(monitor="val_accuracy", mode="min", patience=0),
                      values) == 1


def test_auto_mode_cannot_guess_an_unknown_metric():
    with pytest.raises(ConfigError, match=r"cannot tell whether monitor='val_mystery'"):
        EarlyStoppingState.start(EarlyStoppingRule(monitor="val_mystery"))
    state = EarlyStoppingState.start(EarlyStoppingRule(monitor="val_mystery"), ("mystery",))
    assert state.mode == "max"


def test_unknown_mode_warns_and_falls_back_to_auto():
    with pytest.warns(UserWarning, match="mode sideways is unknown"):
        rule = EarlyStoppingRule(mode="sideways")
    assert rule.mode == "auto"


# -- baseline -------------------------------------------------------------------------------
def test_baseline_never_beaten_keeps_wait_growing():
    rule = EarlyStoppingRule(baseline=0.5, patience=2)
    # Steady improvements above the baseline: wait 1, 2, 3, 4 but improving epochs return
    # before the patience check, so it never stops.
    decisions, state = run(rule, [1.0, 0.9, 0.8, 0.7])
    assert [stop for _, stop in decisions] == [False] * 4
    assert state.wait == 4 and state.best == 0.7
    # The first epoch without improvement then stops at once (wait 3 >= 2) ...
    assert stop_epoch(rule, [1.0, 0.9, 0.95]) == 2
    # ... where without the baseline wait would be 1 there.
    assert stop_epoch(EarlyStoppingRule(patience=2), [1.0, 0.9, 0.95]) is None


def test_baseline_beaten_resets_wait():
    rule = EarlyStoppingRule(baseline=0.95, patience=2)
    # e0: wait 1 (1.0 does not beat 0.95); e1: 0.9 beats both -> wait 0; e2: wait 1; e3: wait 2.
    decisions, state = run(rule, [1.0, 0.9, 0.95, 0.96, 0.97])
    assert [stop for _, stop in decisions] == [False, False, False, True]
    assert state.best_epoch == 1


def test_baseline_is_compared_with_min_delta():
    rule = EarlyStoppingRule(baseline=1.0, min_delta=0.25, patience=1)
    # e0: 0.75 is the first best, but 0.75 + 0.25 < 1.0 is false -> wait stays 1;
    # e1: 0.75 no improvement, wait 2 >= 1 -> stop.
    assert stop_epoch(rule, [0.75, 0.75]) == 1
    # e0: 0.5 beats the baseline by more than min_delta -> wait 0; e1: wait 1 >= 1 -> stop.
    assert stop_epoch(rule, [0.5, 0.5]) == 1
    decisions, state = run(rule, [0.5])
    assert state.wait == 0


# -- restore_best_weights -------------------------------------------------------------------
def test_restore_best_weights_snapshots_improvements():
    rule = EarlyStoppingRule(restore_best_weights=True, patience=5)
    decisions, state = run(rule, [1.0, 1.1, 0.9, 1.2, 0.8])
    assert [snap for snap, _ in decisions] == [True, False, True, False, True]
    assert state.best_epoch == 4 and state.restores


def test_restore_best_weights_first_eligible_epoch_without_improvement():
    """Keras takes the first eligible epoch's weights whatever its value: it is the first
    best (Keras 3 starts best at None), NaN too, and no value compares better than NaN."""
    rule = EarlyStoppingRule(restore_best_weights=True, patience=5, start_from_epoch=1)
    state = EarlyStoppingState.start(rule)
    assert not state.restores
    assert state.update(0, {"val_loss": 0.5}) == (False, False)  # before start_from_epoch
    assert state.update(1, {"val_loss": math.nan}) == (True, False)  # the first best
    assert state.best_epoch == 1 and state.restores and state.wait == 0
    assert state.update(2, {"val_loss": 2.0}) == (False, False)  # not better than NaN
    assert state.update(3, {"val_loss": 3.0}) == (False, False)
    assert state.best_epoch == 1 and state.wait == 2


def test_without_restore_best_weights_nothing_is_snapshot():
    decisions, state = run(EarlyStoppingRule(patience=2), [1.0, 0.5, 0.6, 0.7])
    assert [snap for snap, _ in decisions] == [False] * 4
    assert not state.restores


# -- start_from_epoch ------------------------------------------------------------------------
def test_start_from_epoch_ignores_earlier_epochs():
    rule = EarlyStoppingRule(patience=0, start_from_epoch=2)
    # e0, e1 ignored (even e1 getting worse); e2 is the first best; e3 worse -> stop at 3.
    assert stop_epoch(rule, [1.0, 2.0, 3.0, 4.0]) == 3
    assert stop_epoch(EarlyStoppingRule(patience=0), [1.0, 2.0, 3.0, 4.0]) == 1
    decisions, state = run(rule, [1.0, 2.0, 3.0, 4.0])
    assert decisions[:2] == [(False, False), (False, False)]
    assert state.best == 3.0 and state.best_epoch == 2


def test_start_from_epoch_does_not_count_waiting():
    rule = EarlyStoppingRule(patience=1, start_from_epoch=3)
    # e3: improves (wait 0); e4: wait 1 >= 1 -> stop at 4.
    assert stop_epoch(rule, [9.0, 9.0, 9.0, 1.0, 1.0, 1.0]) == 4


# -- epoch > 0 ------------------------------------------------------------------------------
def test_never_stops_at_epoch_zero():
    rule = EarlyStoppingRule(patience=0)
    state = EarlyStoppingState.start(rule)
    # The first value is the best, NaN too (wait 0); nothing is better than NaN: epoch 1
    # waits 1 >= 0 and stops.
    assert state.update(0, {"val_loss": math.nan}) == (False, False)
    assert state.wait == 0
    assert state.update(1, {"val_loss": math.nan}) == (False, True)
    # A state carried over with a better best: epoch 0 does not stop, epoch 1 does.
    carried = EarlyStoppingState(rule=rule, mode="min", best=0.5)
    assert carried.update(0, {"val_loss": 1.0}) == (False, False)
    assert carried.update(1, {"val_loss": 1.0}) == (False, True)
    assert carried.stopped_epoch == 1


# -- missing monitor, arguments -------------------------------------------------------------
def test_missing_monitor_warns_once_and_changes_nothing():
    state = EarlyStoppingState.start(EarlyStoppingRule(patience=0))
    with pytest.warns(UserWarning, match=r"`val_loss` which is not available.*loss,accuracy"):
        assert state.update(0, {"loss": 1.0, "accuracy": 0.5}) == (False, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert state.update(1, {"loss": 1.0}) == (False, False)
    assert state.wait == 0 and state.best is None


@pytest.mark.parametrize("kwargs, message", [
    ({"patience": -1}, r"EarlyStopping: 'patience' must be an int >= 0. Got -1."),
    ({"patience": 1.5}, r"'patience' must be an int >= 0. Got 1.5."),
    ({"start_from_epoch": -2}, r"'start_from_epoch' must be an int >= 0. Got -2."),
    ({"min_delta": "0.1"}, r"'min_delta' must be a float. Got '0.1'."),
    ({"monitor": ""}, r"'monitor' must be a metric name"),
    ({"min_delta": float("nan")}, r"'min_delta' must be a float. Got nan."),
    ({"baseline": "x"}, r"'baseline' must be a number or None. Got 'x'."),
    ({"baseline": float("nan")}, r"'baseline' must be a number or None. Got nan."),
    # Keras takes any truth value; 'false' would be true: refused as a slip
    ({"restore_best_weights": "false"}, r"'restore_best_weights' must be True or False. "
                                        r"Got 'false'."),
    ({"restore_best_weights": 2}, r"'restore_best_weights' must be True or False. Got 2."),
])
def test_rule_argument_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        EarlyStoppingRule(**kwargs)


def test_keras_s_other_truth_values_and_infinite_deltas_are_taken():
    assert EarlyStoppingRule(restore_best_weights=1).restore_best_weights == 1
    assert EarlyStoppingRule(min_delta=float("inf")).min_delta == float("inf")
    assert EarlyStoppingRule(baseline=0).baseline == 0.0


def test_is_improvement():
    assert is_improvement(1.0, None, 0.0, "min")
    assert is_improvement(0.5, 1.0, 0.25, "min") and not is_improvement(0.75, 1.0, 0.25, "min")
    assert is_improvement(1.5, 1.0, 0.25, "max") and not is_improvement(1.25, 1.0, 0.25, "max")
    assert not is_improvement(1.0, 1.0, 0.0, "min") and not is_improvement(1.0, 1.0, 0.0, "max")
