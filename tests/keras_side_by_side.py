"""Keras and reglab side by side for the metric parity tests: the same model from the same
initial weights trained and evaluated by both, and a saved model read back by both."""

from __future__ import annotations

import numpy as np
import pytest


def fit_side_by_side(keras, reglab, build, compile_kwargs, x, y, *, epochs=3, batch_size=16,
                     validation=50, evaluate_batch=32, **fit):
    """``{"keras": (history, evaluate's dict), "reglab": (...)}``: ``build(api)`` compiled
    with ``compile_kwargs(api)``, both from Keras's initial weights, trained without
    shuffling on ``x``/``y`` (validated on their first ``validation`` samples)."""
    seen, start = {}, None
    for api in (keras, reglab):
        keras.utils.set_random_seed(0)
        model = build(api)
        start = model.get_weights() if start is None else start
        model.set_weights(start)
        model.compile(**compile_kwargs(api))
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0,
                            shuffle=False, validation_data=(x[:validation], y[:validation]),
                            **fit).history
        seen[api.__name__] = (history, model.evaluate(x, y, batch_size=evaluate_batch,
                                                      verbose=0, return_dict=True))
    return seen


def assert_logs_alike(seen, rtol=1e-5, atol=1e-6) -> None:
    """reglab logged the keys Keras logged, each value within the tolerances."""
    (k_history, k_eval), (r_history, r_eval) = seen["keras"], seen["reglab"]
    assert sorted(r_history) == sorted(k_history)
    for key, values in k_history.items():
        np.testing.assert_allclose(r_history[key], values, rtol=rtol, atol=atol, err_msg=key)
    assert sorted(r_eval) == sorted(k_eval)
    for key, value in k_eval.items():
        assert r_eval[key] == pytest.approx(value, rel=rtol, abs=atol), key


def assert_saved_alike(keras, reglab, compiled, x, y, tmp_path, rel=1e-5, abs=1e-6) -> None:
    """A model ``compiled(api)`` by each library, fitted an epoch and saved, evaluates the
    same once read back by Keras's ``load_model`` and by reglab's."""
    for api in (keras, reglab):
        keras.utils.set_random_seed(1)
        model = compiled(api)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        path = tmp_path / f"{api.__name__}.keras"
        model.save(path)
        theirs = model.evaluate(x, y, verbose=0, return_dict=True)
        for loader in (keras.models.load_model, reglab.models.load_model):
            again = loader(path).evaluate(x, y, verbose=0, return_dict=True)
            assert sorted(again) == sorted(theirs)
            for key, value in theirs.items():
                assert again[key] == pytest.approx(value, rel=rel, abs=abs), (loader, key)


@pytest.fixture
def float32_policies_afterwards():
    """Both libraries' global dtype policy back to float32 after a test that changes it."""
    yield
    import keras

    import reglab

    keras.mixed_precision.set_global_policy("float32")
    reglab.mixed_precision.set_global_policy("float32")
