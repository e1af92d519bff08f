"""A Keras layer reglab has not is named as such, with the layers it has."""

from __future__ import annotations

import pytest

import reglab.layers as layers


@pytest.mark.parametrize("name", ["LSTM", "RandomCrop", "Normalization", "GRU"])
def test_a_layer_reglab_has_not_says_so_and_lists_its_layers(name):
    with pytest.raises(AttributeError, match=rf"reglab.layers has no layer '{name}' \(not "
                                             r"supported yet, if Keras has it\). Its layers: "
                                             r"Activation, .*Dense, .*ZeroPadding2D\."):
        getattr(layers, name)
    assert not hasattr(layers, name)
    with pytest.raises(AttributeError, match="module 'reglab.layers' has no attribute '_x'"):
        _ = layers._x


@pytest.mark.parametrize("method", ["flow_from_directory", "flow_from_dataframe"])
def test_image_files_flows_are_named_as_not_supported(method):
    from reglab.errors import ConfigError
    from reglab.preprocessing.image import ImageDataGenerator

    with pytest.raises(ConfigError, match=rf"ImageDataGenerator.{method}: reading image files "
                                          r".* not supported yet\. Load the images into an "
                                          r"array .* then use flow\(x, y\)"):
        getattr(ImageDataGenerator(), method)("images/")
