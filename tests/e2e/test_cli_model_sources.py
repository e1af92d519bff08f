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

def embedded():  # arguments that look like the input's or like no activation, yet needed
    return reglab.Sequential([
        reglab.layers.Embedding(20, 4, input_shape=(6,)), reglab.layers.Flatten(),
        reglab.layers.Dense(8), reglab.layers.Activation("linear"),
        reglab.layers.Dense(3, activation="softmax")])

def broken():
    raise RuntimeError("no GPU here")

def exits():
    import sys
    sys.exit(3)

def empty():
    return reglab.Sequential([reglab.Input((6,))])

def plain():  # the first layer says the input; no activation; L1L2's l2 left at 0
    return reglab.Sequential([
        reglab.layers.Dense(8, input_shape=(6,),
                            kernel_regularizer=reglab.regularizers.L1L2(l1=0.001)),
        reglab.layers.Dense(3)])
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


def test_defaults_written_out_by_a_factory_are_left_out(tmp_path):
    spec = parse_study(write(tmp_path, '[model]\nfactory = "factories:plain"\n'))
    reference = parse_study(write(tmp_path, """
[model]
input_shape = [6]
layers = [{ type = "Dense", units = 8, kernel_regularizer = { type = "L1L2", l1 = 0.001 } },
          { type = "Dense", units = 3 }]
"""))
    assert spec.layers == reference.layers
    assert spec.fingerprint() == reference.fingerprint()


def test_arguments_a_layer_needs_are_kept_where_they_look_like_defaults(tmp_path):
    # Embedding's input_dim is no input shape; Activation("linear") is its one argument
    spec = parse_study(write(tmp_path, '[model]\nfactory = "factories:embedded"\n'))
    embedding, _, dense, activation, _ = spec.layers
    assert (embedding.args["input_dim"], embedding.args["output_dim"]) == (20, 4)
    assert activation.args == {"activation": "linear"}
    assert "activation" not in dense.args  # a Dense without one: written as none
    assert spec.input_shape == (6,)


CNN_TOML = """
[model]
input_shape = [8, 8, 1]
layers = [{ type = "Conv2D", filters = 4, kernel_size = 3, activation = "relu", padding = "same" },
          { type = "MaxPooling2D" },
          { type = "SpatialDropout2D", rate = 0.1 },
          { type = "Flatten" },
          { type = "Dense", units = 3, activation = "softmax", kernel_constraint = { type = "MaxNorm", max_value = 3.0 } }]
"""


def test_a_keras_cnn_file_is_the_same_study_as_its_toml(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.SpatialDropout2D(0.1),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax",
                           kernel_constraint=keras.constraints.MaxNorm(3.0)),
    ])
    model.save(tmp_path / "cnn.keras")
    spec = parse_study(write(tmp_path, '[model]\nkeras = "cnn.keras"\n'))
    reference = parse_study(write(tmp_path, CNN_TOML))
    assert spec.layers == reference.layers and spec.input_shape == (8, 8, 1)
    assert spec.fingerprint() == reference.fingerprint()
    mixed = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, dtype="mixed_float16")])
    mixed.save(tmp_path / "mixed.keras")
    with pytest.raises(StudySpecError) as error:
        parse_study(write(tmp_path, '[model]\nkeras = "mixed.keras"\n'))
    assert any("(Dense).dtype: the dtype policy 'mixed_float16'" in p
               for p in error.value.problems)


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
    ('[model]\nfactory = "factories:exits"\n',
     "model.factory: calling 'factories:exits' called sys.exit(3); expected it to return"),
    ('[model]\nfactory = "factories"\n', "model.factory: expected 'package.module:function'"),
    ('[model]\nfactory = "factories:make_model"\ninput_shape = [7]\n',
     "model.input_shape: the model of model.factory (factories:make_model) takes [6]"),
    ('[model]\nfactory = "factories:make_model"\nlayers = []\n',
     "model: expected one of 'layers', 'keras'"),
    ('[model]\nfactory = "factories:make_model"\ninput_shape = 6\n',
     "model.input_shape: expected a list of positive ints"),
    ('[model]\nfactory = "factories:empty"\n',
     "model.factory (factories:empty): expected a model with at least one layer"),
])
def test_bad_model_sources_name_their_place(tmp_path, section, expected):
    with pytest.raises(StudySpecError) as error:
        parse_study(write(tmp_path, section))
    assert any(p.startswith(expected) for p in error.value.problems), error.value.problems
    if "input_shape" not in section and "layers" not in section:  # named once, there
        assert not any(p.startswith("model.input_shape") for p in error.value.problems), \
            error.value.problems


def test_a_keras_file_with_what_reglab_lacks_is_refused_layer_by_layer(tmp_path):
    keras = pytest.importorskip("keras")
    functional_in = keras.Input((6,))
    functional = keras.Model(functional_in, keras.layers.Dense(3)(functional_in))
    functional.save(tmp_path / "functional.keras")
    sequential = keras.Sequential([keras.Input((6, 1)), keras.layers.LSTM(4),
                                   keras.layers.Dense(3)])
    sequential.save(tmp_path / "recurrent.keras")
    for name, expected in (("functional", "expected a Sequential model. Got 'Functional'"),
                           ("recurrent", "layers[0]: reglab has no layer 'LSTM'")):
        with pytest.raises(StudySpecError) as error:
            parse_study(write(tmp_path, f'[model]\nkeras = "{name}.keras"\n'))
        assert any(expected in p for p in error.value.problems), error.value.problems
