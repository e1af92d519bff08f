"""Conv2D on samples that are not images says so, naming the layer and the shape, on every
path that builds it (a functional model, Sequential)."""

from __future__ import annotations

import re

import pytest

import reglab
from reglab.errors import ConfigError


@pytest.mark.parametrize("shape", [(8,), (2, 4), (2, 2, 2, 2)])
def test_conv2d_on_other_than_images_is_refused_by_name(shape):
    expected = re.escape("Conv2D: expects inputs (height, width, channels) per sample. Got "
                         f"shape {shape!r}.")
    with pytest.raises(ConfigError, match=expected):
        reglab.layers.Conv2D(4, 3)(reglab.Input(shape))
    model = reglab.Sequential([reglab.Input(shape), reglab.layers.Conv2D(4, 3),
                               reglab.layers.Flatten(), reglab.layers.Dense(2)])
    with pytest.raises(ConfigError, match=expected):
        model.summary()
