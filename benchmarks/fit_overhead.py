"""``Sequential.fit`` against a plain PyTorch loop, on the tutorial's 784-64-10 model.

Both train Fashion-MNIST for one epoch with Adam(1e-3) and track loss and accuracy,
in the same process, alternating, repeated; medians are printed with the ratio
reglab / plain (the issue's target is <= 1.15).

    python benchmarks/fit_overhead.py [--batches 32 128] [--repeats 5] [--threads 1]
                                      [--fraction 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def plain_epoch(x, y, batch):
    """One epoch of a carefully written PyTorch loop (fused Adam, flush-to-zero)."""
    from torch import nn

    model = nn.Sequential(nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    order = torch.randperm(len(x))
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for lo in range(0, len(x), batch):
        index = order[lo:lo + batch]
        xb, yb = x.index_select(0, index), y.index_select(0, index)
        logits = model(xb)
        loss = nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss * len(index)
            correct += (logits.argmax(dim=1) == yb).sum()
    float(loss_sum), int(correct)
    torch.set_flush_denormal(False)
    return time.perf_counter() - start


def reglab_epoch(x, y, batch):
    import reglab as keras

    model = keras.Sequential([keras.layers.Dense(64, activation="relu", input_shape=(784,)),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from reglab.datasets import fashion_mnist

    (x, y), _ = fashion_mnist.load_data()
    n = int(len(x) * args.fraction)
    x = (x.reshape(-1, 784)[:n].astype("float32") / 255.0)
    y = y[:n].astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    plain_epoch(xt[:512], yt[:512], 32)  # warm-up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {n} images; "
          f"medians of {args.repeats} alternating runs")
    print(f"{'batch':>5} {'reglab s/epoch':>15} {'plain s/epoch':>14} {'ratio':>7}")
    for batch in args.batches:
        ours, plain = [], []
        for _ in range(args.repeats):
            plain.append(plain_epoch(xt, yt, batch))
            ours.append(reglab_epoch(x, y, batch))
        a, b = statistics.median(ours), statistics.median(plain)
        print(f"{batch:>5} {a:>15.3f} {b:>14.3f} {a / b:>6.2f}x")


if __name__ == "__main__":
    main()
