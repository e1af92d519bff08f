"""A member trains bit for bit as it would alone, whoever shares its population.

Every structure a study file can express (penalties of each kind, constraints, dropout and
noise, batch normalization, early stopping, augmentation, MixUp, CutMix, label smoothing,
weight averaging (EMA, SWA with its batch-normalization pass),
convolutions, each optimizer, mixed hyperparameters) is trained as a full population, each member alone, and in pairs;
the final weights and every epoch's logs must be identical (one torch thread, as the
suite runs). Shapes are chosen so that per-member tensors are not multiples of the CPU's
vector width: a member whose elements fall in a kernel's scalar tail in one population
and in its vector body in another would show here.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from reglab.augment import AffineSpec
from reglab.constraints import MaxNorm
from reglab.engine import EarlyStoppingRule, Member, Population
from reglab.layers import (
    BatchNormalization,
    Conv2D,
    CutMix,
    Dense,
    Dropout,
    Flatten,
    GaussianDropout,
    GaussianNoise,
    LabelSmoothing,
    MaxPooling2D,
    MixUp,
    RandomFlip,
    RandomRotation,
)
from reglab.mixed_precision import DTypePolicy
from reglab.optimizers import (
    SGD,
    Adadelta,
    Adafactor,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    Ftrl,
    Lamb,
    Lion,
    Nadam,
    RMSprop,
)
from reglab.optimizers.schedules import CosineDecayRestarts, ExponentialDecay
from reglab.regularizers import L1L2, ProximalL1, l1, l2

REGULARIZERS = {"none": None, "l1": l1(1e-3), "l2": l2(1e-2), "l1l2": L1L2(1e-3, 1e-3),
                "prox": ProximalL1(1e-3)}


def flat_data(n=101, features=13, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int64") + (x[:, 2] > 1.0)
    return x, y


def image_data(n=45, size=9, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, 1)).astype("float32")
    y = (x[:, :4].mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    return x, y


def mlp(variant, seed, activation="relu"):
    reg = REGULARIZERS[variant.get("reg", "none")]
    layers = [Dense(7, activation=activation, input_shape=(13,), kernel_regularizer=reg,
                    kernel_constraint=MaxNorm(variant.get("max_norm", 3.0))),
              Dropout(variant.get("dropout", 0.0)),
              Dense(3, activation="softmax", kernel_regularizer=reg)]
    return layers


def mlp_wide(variant, seed):
    """A first Dense of 32 units behind a Flatten: the members of a seed group share one
    GEMM (layers/shared_input.py), so a member's neighbours change the GEMM's width."""
    reg = REGULARIZERS[variant.get("reg", "none")]
    return [Flatten(input_shape=(13,)),
            Dense(32, activation="relu", kernel_regularizer=reg),
            Dropout(variant.get("dropout", 0.0)),
            Dense(3, activation="softmax", kernel_regularizer=reg)]


def mlp_wide_bfloat16(variant, seed):
    """The same in mixed precision: bfloat16 compute, float32 weights and output layer."""
    layers = mlp_wide(variant, seed)
    for layer in layers[:-1]:
        layer.dtype_policy = DTypePolicy("mixed_bfloat16")
    return layers


def mlp_bn_noise(variant, seed):
    return [Dense(7, activation="elu", input_shape=(13,),
                  kernel_regularizer=REGULARIZERS[variant.get("reg", "none")]),
            BatchNormalization(momentum=variant.get("momentum", 0.99)),
            GaussianNoise(variant.get("noise", 0.0)),
            GaussianDropout(variant.get("dropout", 0.0)),
            Dense(3, activation="softmax")]


def cnn(variant, seed):
    return [RandomFlip("horizontal", input_shape=(9, 9, 1)), RandomRotation(0.1),
            Conv2D(3, 3, activation="relu", input_shape=(9, 9, 1),
                   kernel_regularizer=REGULARIZERS[variant.get("reg", "none")]),
            BatchNormalization(), MaxPooling2D(), Flatten(),
            Dropout(variant.get("dropout", 0.0)), Dense(2, activation="sigmoid"),
            Dense(2, activation="softmax")]


def cnn_bfloat16(variant, seed):
    """The CNN in mixed precision: every layer but the output computes in bfloat16."""
    layers = cnn(variant, seed)
    for layer in layers[:-1]:
        layer.dtype_policy = DTypePolicy("mixed_bfloat16")
    return layers


def cnn_mixing(variant, seed):
    layers = cnn(variant, seed)
    return layers[:2] + [MixUp(variant.get("mixup", 0.0)), CutMix(variant.get("cutmix", 0.0)),
                         LabelSmoothing(variant.get("smoothing", 0.0))] + layers[2:]


def adam(variant):
    return Adam(variant.get("lr", 0.01))


VARIANTS = [{}, {"reg": "l1", "dropout": 0.3}, {"reg": "l2", "lr": 0.02},
            {"reg": "prox", "max_norm": 1.0}, {"reg": "l1l2", "stop": True}]
BN_VARIANTS = [{}, {"reg": "l2", "noise": 0.2, "lr": 0.02}, {"dropout": 0.2, "momentum": 0.9},
               {"stop": True}]
CNN_VARIANTS = [{}, {"reg": "l2", "dropout": 0.4}, {"lr": 0.03, "stop": True}]
MIXING_VARIANTS = [{}, {"mixup": 0.4}, {"cutmix": 1.0, "smoothing": 0.1}, {"mixup": 0.2}]

CASES = {
    "mlp-adam": (mlp, adam, VARIANTS, flat_data, None),
    "mlp-sigmoid-sgd": (lambda v, s: mlp(v, s, "sigmoid"),
                        lambda v: SGD(v.get("lr", 0.01) * 5, momentum=0.9, nesterov=True),
                        VARIANTS, flat_data, None),
    "mlp-selu-rmsprop-centered": (lambda v, s: mlp(v, s, "selu"),
                                  lambda v: RMSprop(v.get("lr", 0.01), centered=True,
                                                    momentum=0.5), VARIANTS, flat_data, None),
    "mlp-softplus-amsgrad": (lambda v, s: mlp(v, s, "softplus"),
                             lambda v: Adam(v.get("lr", 0.01), amsgrad=True), VARIANTS,
                             flat_data, None),
    "mlp-wide-shared-gemm": (mlp_wide, adam, VARIANTS, flat_data, None),
    # Keras's gradient clipping, each member's own threshold (with the penalties' gradients
    # clipped too: the optimizer folds none of them in)
    "mlp-wide-adam-global-clipnorm": (
        mlp_wide, lambda v: Adam(v.get("lr", 0.01), global_clipnorm=0.05 + v.get("lr", 0.01)),
        VARIANTS, flat_data, None),
    "mlp-sgd-clipnorm": (mlp, lambda v: SGD(v.get("lr", 0.01) * 5, momentum=0.9,
                                            clipnorm=0.02 + v.get("lr", 0.01)),
                         VARIANTS, flat_data, None),
    # each member's learning rate follows its own schedule, by its own step count
    "mlp-adam-schedules": (
        mlp, lambda v: Adam(CosineDecayRestarts(v.get("lr", 0.01), 5, alpha=0.1)
                            if v.get("reg") == "l1" else
                            ExponentialDecay(v.get("lr", 0.01) * 2, 7, 0.5)),
        VARIANTS, flat_data, None),
    # Keras's other optimizers: per-member coefficients of their own step counts, Adagrad's
    # accumulator starting at each member's value
    "mlp-nadam": (mlp, lambda v: Nadam(v.get("lr", 0.01), beta_1=0.9 - v.get("lr", 0.01)),
                  VARIANTS, flat_data, None),
    "mlp-adagrad": (
        mlp, lambda v: (Adagrad(v.get("lr", 0.01) * 5, initial_accumulator_value=v.get(
            "lr", 0.01) * 10) if "stop" not in v else Adagrad(0.05)), VARIANTS, flat_data,
        None),
    "mlp-adamax": (mlp, lambda v: Adamax(v.get("lr", 0.01), beta_2=0.99), VARIANTS,
                   flat_data, None),
    "mlp-adadelta": (mlp, lambda v: Adadelta(v.get("lr", 0.01) * 50, rho=0.9), VARIANTS,
                     flat_data, None),
    "mlp-lion": (mlp, lambda v: Lion(v.get("lr", 0.01) / 5, beta_2=0.95), VARIANTS, flat_data,
                 None),
    "mlp-ftrl": (mlp, lambda v: Ftrl(v.get("lr", 0.01) * 5, l1_regularization_strength=1e-3,
                                     l2_shrinkage_regularization_strength=1e-3, beta=0.1),
                 VARIANTS, flat_data, None),
    "mlp-adafactor": (mlp, lambda v: Adafactor(v.get("lr", 0.01) * 5, clip_threshold=0.5),
                      VARIANTS, flat_data, None),
    "mlp-lamb": (mlp, lambda v: Lamb(v.get("lr", 0.01), beta_2=0.99, weight_decay=0.01),
                 VARIANTS, flat_data, None),
    "mlp-rmsprop-clipvalue": (mlp, lambda v: RMSprop(v.get("lr", 0.01), clipvalue=0.01),
                              VARIANTS, flat_data, None),
    "mlp-wide-bfloat16": (mlp_wide_bfloat16, adam, VARIANTS, flat_data, None),
    "bn-noise-adamw": (mlp_bn_noise, lambda v: AdamW(v.get("lr", 0.01), weight_decay=0.05),
                       BN_VARIANTS, flat_data, None),
    "bn-ema-swa": (mlp_bn_noise, lambda v: Adam(v.get("lr", 0.01), use_ema=True,
                                                ema_momentum=v.get("ema", 0.9),
                                                swa_start=v.get("swa")),
                   [{}, {"swa": 1, "ema": 0.5}, {"swa": 2, "stop": True}, {"noise": 0.1}],
                   flat_data, None),
    "cnn-augment": (cnn, adam, CNN_VARIANTS, image_data,
                    AffineSpec(rotation_range=30, width_shift_range=0.1, shear_range=10,
                               horizontal_flip=True)),
    "cnn-bfloat16": (cnn_bfloat16, adam, CNN_VARIANTS, image_data, None),
    "cnn-mixup-cutmix-smoothing": (cnn_mixing, adam, MIXING_VARIANTS, image_data, None),
}


def members_for(case, pairs):
    build, optimizer, variants, _, _ = CASES[case]
    return [Member(build(variants[v], seed), optimizer(variants[v]), seed=seed,
                   early_stopping=EarlyStoppingRule(monitor="val_loss", patience=0,
                                                    restore_best_weights=True)
                   if variants[v].get("stop") else None)
            for v, seed in pairs]


def train(case, pairs):
    _, _, _, data, augment = CASES[case]
    x, y = data()
    x_val, y_val = data(seed=7)
    population = Population(members_for(case, pairs), dtype=torch.float32)
    result = population.fit(x, y, batch_size=16, epochs=4, validation_data=(x_val, y_val),
                            augment=augment)
    return {pair: (population.member_weights(i), result.members[i].history,
                   result.members[i].status) for i, pair in enumerate(pairs)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_member_trains_the_same_alone_in_pairs_and_in_the_full_population(case):
    variants = CASES[case][2]
    everyone = [(v, seed) for seed in (0, 1) for v in range(len(variants))]
    full = train(case, everyone)
    groups = [[pair] for pair in everyone[:: 2]]
    groups += [list(p) for p in itertools.combinations(everyone, 2)][::5]
    groups.append(list(reversed(everyone)))
    groups.append(sorted(everyone))  # seeds interleaved: a seed group's members not adjacent
    for group in groups:
        for pair, (weights, history, status) in train(case, group).items():
            expected_weights, expected_history, expected_status = full[pair]
            assert status == expected_status, (group, pair)
            assert history == expected_history, (group, pair)
            for key, tensor in weights.items():
                assert torch.equal(tensor, expected_weights[key]), (group, pair, key)


@pytest.mark.parametrize("case", ["mlp-wide-bfloat16", "cnn-bfloat16"])
def test_a_member_trains_the_same_alone_and_in_pairs_with_widened_half_products(case,
                                                                                monkeypatch):
    """As above on a CPU without bfloat16 products, whatever this one has: the layers'
    products run in float32 on widened operands (layers/products.py)."""
    from reglab.layers import products

    monkeypatch.setattr(products, "native_half_products", lambda dtype: False)
    test_a_member_trains_the_same_alone_in_pairs_and_in_the_full_population(case)
