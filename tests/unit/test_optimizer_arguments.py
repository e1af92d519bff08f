"""Optimizer arguments: each bad value named with the range it must lie in."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reglab.errors import ConfigError
from reglab.optimizers import SGD, Adam, RMSprop


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1e-3, "0.01", True])
def test_a_learning_rate_must_be_finite_and_not_negative(value):
    # the message must not claim a range that holds the value it refuses (inf)
    with pytest.raises(ConfigError) as caught:
        Adam(learning_rate=value)
    assert str(caught.value) == (f"Adam: 'learning_rate' must be a finite float >= 0.0. "
                                 f"Got {value!r}.")


def test_a_learning_rate_of_zero_is_taken_and_leaves_the_weights_as_keras_does():
    import reglab

    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model = reglab.Sequential([reglab.Input((3,)), reglab.layers.Dense(2)])
    model.compile(optimizer=SGD(0.0), loss="mse")
    before = model.get_weights()
    model.fit(x, np.ones((16, 2), "float32"), epochs=2, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    adam = Adam(0.01)
    adam.learning_rate = 0.0
    assert float(adam.learning_rate) == 0.0


@pytest.mark.parametrize("make, message", [
    (lambda: Adam(beta_1=1.0), "Adam: 'beta_1' must be a float in the range [0.0, 1.0). Got 1.0."),
    (lambda: Adam(epsilon=math.inf), "Adam: 'epsilon' must be a finite float >= 0.0. Got inf."),
    (lambda: SGD(momentum=1.5), "SGD: 'momentum' must be a float in the range [0.0, 1.0]. "
                                "Got 1.5."),
    (lambda: RMSprop(rho=-0.1), "RMSprop: 'rho' must be a float in the range [0.0, 1.0]. "
                                "Got -0.1."),
])
def test_bounded_arguments_name_their_range(make, message):
    with pytest.raises(ConfigError) as caught:
        make()
    assert str(caught.value) == message


def test_values_at_the_edges_are_accepted():
    assert Adam(beta_1=0.0, epsilon=0.0).beta_1 == 0.0
    assert SGD(momentum=1.0).momentum == 1.0


def test_exclude_from_weight_decay_takes_names_as_keras_and_refuses_what_it_cannot_take():
    from reglab.optimizers import AdamW, LossScaleOptimizer

    optimizer = AdamW(weight_decay=0.1)
    assert optimizer.decays("bias") and optimizer.decays("gamma")  # Keras: every weight
    optimizer.exclude_from_weight_decay(var_names=["bias", "gam"])
    assert not optimizer.decays("bias") and not optimizer.decays("gamma")
    assert optimizer.decays("kernel") and optimizer.decays("beta")
    optimizer.exclude_from_weight_decay(var_names=[])  # called again: replaces the names
    assert optimizer.decays("bias")
    wrapped = LossScaleOptimizer(AdamW(weight_decay=0.1))
    wrapped.exclude_from_weight_decay(var_names=["^kernel$"])
    assert not wrapped.decays("kernel") and wrapped.decays("recurrent_kernel")
    with pytest.raises(ConfigError, match="var_list"):
        AdamW().exclude_from_weight_decay(var_list=[object()])
    with pytest.raises(ConfigError, match="list of strings"):
        AdamW().exclude_from_weight_decay(var_names="bias")
    with pytest.raises(ConfigError, match="regular expression"):
        AdamW().exclude_from_weight_decay(var_names=["bias("])


def test_members_that_exclude_other_weights_from_decay_are_not_one_population():
    from reglab.optimizers import AdamW

    a, b = AdamW(weight_decay=0.1), AdamW(weight_decay=0.1)
    b.exclude_from_weight_decay(var_names=["bias"])
    assert a.structure() != b.structure()


def _every_optimizer():
    from reglab import optimizers

    return [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.RMSprop,
            optimizers.Adagrad, optimizers.Adadelta, optimizers.Adamax, optimizers.Nadam,
            optimizers.Lamb, optimizers.Lion, optimizers.Ftrl, optimizers.Adafactor]


@pytest.mark.parametrize("cls", _every_optimizer(), ids=lambda c: c.__name__)
def test_keras_2_s_decay_is_ignored_with_keras_3_s_warning(cls):
    """``SGD(0.01, decay=1e-6)`` of older tutorials: Keras 3 warns and ignores it."""
    with pytest.warns(UserWarning, match="argument `decay` is no longer supported") as caught:
        given = cls(learning_rate=0.01, decay=1e-6)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert given.hyperparameters() == cls(learning_rate=0.01).hyperparameters()


@pytest.mark.parametrize("cls", _every_optimizer(), ids=lambda c: c.__name__)
def test_an_argument_the_optimizer_has_not_is_refused_by_name_as_keras_does(cls):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}: argument\(s\) not recognized: "
                       r"\['lr'\]. Got lr=0.1."):
        cls(lr=0.1)
    # (an argument none of them has: Ftrl has a 'beta')
    with pytest.raises(ValueError, match="not recognized"):  # Keras's error type
        cls(learning_rate=0.1, decay=0.0, gamma=3)
    with pytest.raises(TypeError, match="not recognized"):  # and Python's
        cls(learning_rate=0.1, gamma=3)


@pytest.mark.parametrize("cls", _every_optimizer(), ids=lambda c: c.__name__)
def test_keras_s_name_and_unset_keras_3_arguments_are_taken(cls):
    """``SGD(0.1, name="my_sgd")`` and a Keras 3 config's ``loss_scale_factor=None``,
    ``gradient_accumulation_steps=None``; set ones are refused."""
    given = cls(learning_rate=0.1, name="mine", loss_scale_factor=None,
                gradient_accumulation_steps=None)
    assert given.hyperparameters() == cls(learning_rate=0.1).hyperparameters()
    with pytest.raises(ConfigError, match="'gradient_accumulation_steps' \\(Keras 3's gradient "
                       "accumulation\\) is not supported yet; only None is taken. Got "
                       "gradient_accumulation_steps=4. A batch_size"):
        cls(learning_rate=0.1, gradient_accumulation_steps=4)
    with pytest.raises(TypeError, match="'loss_scale_factor' \\(Keras 3's static loss "
                       "scaling\\) is not supported yet.*LossScaleOptimizer"):
        cls(learning_rate=0.1, loss_scale_factor=8.0)
