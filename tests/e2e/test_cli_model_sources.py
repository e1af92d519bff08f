"""A study's base model from a Keras model file or a Python factory: the same study as the
layers written in TOML, trained under the study's variants."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from reglab.cli import main  # noqa: E402
from reglab.study.spec import StudySpecError, parse_study  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

COMMON = """
name = "sources"
seeds = 2
[data]
dataset = "data.npz"
validation_split = 0.25
[training]
epochs = 2
batch_size = 16
[variants.baseline]
[variants.l2]
kernel_regularizer = { type = "L2", l2 = 0.01 }
[variants.dropout]
dropout = 0.3
"""
TOML_MODEL = """
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, activation = "relu", kernel_regularizer = { type = "L1", l1 = 0.001 } },
          { type = "BatchNormalization", momentum = 0.9 },
          { type = "Dense", units = 3, activation = "softmax" }]
"""
FACTORY = '''
import reglab

def make_model():
    return reglab.Sequential([
        reglab.Input((6,)),
        reglab.layers.Dense(8, activation="relu",
                            kernel_regularizer=reglab.regularizers.L1(0.001)),
        reglab.layers.BatchNormalization(momentum=0.9),
        reglab.layers.Dense(3, activation="softmax"),
    ])

def make_keras_model():
    import keras
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L1(0.001)),
        keras.layers.BatchNormalization(momentum=0.9),
        keras.layers.Dense(3, activation="softmax"),
    ])

def broken():
    raise RuntimeError("no GPU here")
'''


def write(tmp_path, model_section: str):
    rng = np.random.default_rng(0)
    x = rng.random((96, 6))
    y = (x[:, 0] + x[:, 1] > 1).astype(np.int64) + (x[:, 2] > 0.8)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_test=x[:32], y_test=y[:32])
    (tmp_path / "factories.py").write_text(FACTORY)
    path = tmp_path / f"study{abs(hash(model_section)) % 10_000}.toml"
    path.write_text(COMMON + model_section)
    return path


def test_a_factory_gives_the_study_of_the_same_layers_in_toml(tmp_path):
    reference = parse_study(write(tmp_path, TOML_MODEL))
    spec = parse_study(write(tmp_path, '[model]\nfactory = "factories:make_model"\n'))
    assert spec.layers == reference.layers and spec.input_shape == (6,)
    assert spec.fingerprint() == reference.fingerprint()
    result = CliRunner().invoke(main, ["run", str(spec.source), "--out", str(tmp_path / "o"),
                                       "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "dropout" in result.output and "l2" in result.output


def test_a_keras_model_file_and_a_keras_factory_give_the_same_study(tmp_path):
    keras = pytest.importorskip("keras")
    reference = parse_study(write(tmp_path, TOML_MODEL))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import factories

        model = factories.make_keras_model()
    finally:
        sys.path.remove(str(tmp_path))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "mine.keras")
    from_file = parse_study(write(tmp_path, '[model]\nkeras = "mine.keras"\n'))
    assert from_file.layers == reference.layers and from_file.input_shape == (6,)
    assert from_file.fingerprint() == reference.fingerprint()
    factory = parse_study(write(tmp_path, '[model]\nfactory = "factories:make_keras_model"\n'))
    assert factory.fingerprint() == reference.fingerprint()
    result = CliRunner().invoke(main, ["run", str(from_file.source), "--out",
                                       str(tmp_path / "k"), "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    del keras


@pytest.mark.parametrize("section, expected", [
    ('[model]\nkeras = "missing.keras"\n', "model.keras: no file at"),
    ('[model]\nkeras = "data.npz"\n', "model.keras: expected a path to a .keras file"),
    ('[model]\nfactory = "factories:broken"\n',
     "model.factory: calling 'factories:broken' failed: RuntimeError: no GPU here"),
    ('[model]\nfactory = "factories"\n', "model.factory: expected 'package.module:function'"),
    ('[model]\nfactory = "factories:make_model"\ninput_shape = [7]\n',
     "model.input_shape: the model of model.factory (factories:make_model) takes [6]"),
    ('[model]\nfactory = "factories:make_model"\nlayers = []\n',
     "model: expected one of 'layers', 'keras'"),
])
def test_bad_model_sources_name_their_place(tmp_path, section, expected):
    with pytest.raises(StudySpecError) as error:
        parse_study(write(tmp_path, section))
    assert any(p.startswith(expected) for p in error.value.problems), error.value.problems


def test_a_keras_file_with_what_reglab_lacks_is_refused_layer_by_layer(tmp_path):
    keras = pytest.importorskip("keras")
    functional_in = keras.Input((6,))
    functional = keras.Model(functional_in, keras.layers.Dense(3)(functional_in))
    functional.save(tmp_path / "functional.keras")
    sequential = keras.Sequential([keras.Input((6, 1)), keras.layers.LSTM(4),
                                   keras.layers.Dense(3)])
    sequential.save(tmp_path / "recurrent.keras")
    for name, expected in (("functional", "expected a Sequential model. Got 'Functional'"),
                           ("recurrent", "layers[1]: reglab has no layer 'LSTM'")):
        with pytest.raises(StudySpecError) as error:
            parse_study(write(tmp_path, f'[model]\nkeras = "{name}.keras"\n'))
        assert any(expected in p for p in error.value.problems), error.value.problems
