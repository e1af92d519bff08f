"""Times a ``Population`` epoch against training the same members one at a time in plain PyTorch.

The model is the tutorial's Fashion-MNIST MLP, 784-64(relu)-10(softmax), Adam(1e-3), sparse
categorical crossentropy, on the 60,000 training images (x reshaped to (N, 784) float32 / 255).

Members "as in the tutorial": the tutorial's techniques that keep the structure fixed (every
member carries a ``Dropout`` layer, rate 0.0 where it has none; early stopping is the baseline
for a one-epoch timing; augmentation and batch norm change the structure and are left out):

    baseline, l1(0.01), l2(0.01), l1_l2(0.01, 0.01), dropout 0.5, dropout 0.2,
    l2(0.001), l1(0.001), l2(0.01) + dropout 0.5

(regularizers on both Dense kernels). P=1 is the baseline; P=9 is those 9 with seed 0; P=45 is
those 9 x seeds 0..4.

Measured (medians over ``--repeats``; each configuration runs in its own subprocess, so its peak
RSS is its own; each subprocess warms up on a few batches before the timed epoch):

* reglab: wall time of one population epoch / P  (seconds per model-epoch);
* plain PyTorch, one at a time: a hand-written loop (nn.Linear, torch.optim.Adam fused on the
  device if supported else foreach, flush-to-zero, penalties added to the loss as Keras does,
  nn.Dropout, shuffled index batching with no DataLoader, loss and accuracy accumulated on the
  device as Keras's fit does) timed once per distinct technique per repeat; the one-at-a-time
  cost of P members is the sum over the members of their technique's median time;
* Keras 3 (KERAS_BACKEND=torch) the same way, when ``keras`` is importable;
* Keras 3 on JAX (KERAS_BACKEND=jax, XLA on one thread with ``--threads 1``) the same way, when
  ``keras`` and ``jax`` are importable (``pip install -e .[bench]``); each model's train step
  is XLA-compiled on warm-up batches before its timed epoch;
* peak RSS: VmHWM of each worker (ru_maxrss where there is no /proc);
* floors: training FLOPs per model-epoch / measured fp32 matmul peak, and Adam's memory traffic
  (7 x 4 bytes per parameter per step) / measured copy bandwidth.

``--fraction f`` trains on the first f of the data and scales the times to a full epoch.

    python benchmarks/population.py [--populations 1 9 45] [--batches 32 128] [--fraction 1.0]
                                    [--repeats 3] [--device cpu] [--threads 0] [--quick]
                                    [--profile] [--no-keras] [--no-keras-jax]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FULL_N = 60_000
INPUT, HIDDEN, CLASSES = 784, 64, 10
PARAMS = INPUT * HIDDEN + HIDDEN + HIDDEN * CLASSES + CLASSES  # 50,890
WARMUP_BATCHES = 8

# (name, l1, l2, dropout rate); the regularizer applies to both Dense kernels.
TECHNIQUES = [
    ("baseline", 0.0, 0.0, 0.0),
    ("l1(0.01)", 0.01, 0.0, 0.0),
    ("l2(0.01)", 0.0, 0.01, 0.0),
    ("l1_l2(0.01,0.01)", 0.01, 0.01, 0.0),
    ("dropout(0.5)", 0.0, 0.0, 0.5),
    ("dropout(0.2)", 0.0, 0.0, 0.2),
    ("l2(0.001)", 0.0, 0.001, 0.0),
    ("l1(0.001)", 0.001, 0.0, 0.0),
    ("l2(0.01)+dropout(0.5)", 0.0, 0.01, 0.5),
]
SEEDS_AT_45 = 5


def population_members(size: int) -> list[tuple[int, int]]:
    """(technique index, seed) of each member of a population of ``size``."""
    if size == 1:
        return [(0, 0)]
    if size % len(TECHNIQUES):
        raise SystemExit(f"--populations: sizes must be 1 or a multiple of {len(TECHNIQUES)}; "
                         f"got {size}")
    return [(t, s) for s in range(size // len(TECHNIQUES)) for t in range(len(TECHNIQUES))]


def random_data(n: int, rng: np.random.Generator):
    """``n`` random images and labels of the benchmark's shapes, as torch tensors (for the
    benchmarks that time the engine's step rather than learning)."""
    import torch

    return (torch.from_numpy(rng.random((n, INPUT), dtype=np.float32)),
            torch.from_numpy(rng.integers(0, CLASSES, n)))


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    On Linux, ru_maxrss survives fork + exec (a worker started by a big parent reports the
    parent's peak if it is higher), so the kernel's per-address-space high-water mark VmHWM is
    read instead; elsewhere ru_maxrss (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# -- workers (one configuration per subprocess) ------------------------------------------------

def _load(cfg):
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    data = np.load(cfg["data"])
    x = data["x"].astype(np.float32)  # the full 60k, as a user holds it
    np.divide(x, 255.0, out=x)
    x, y = torch.from_numpy(x), torch.from_numpy(data["y"].astype(np.int64))
    del data
    device = torch.device(cfg["device"])
    x, y = x.to(device), y.to(device)
    return torch, x, y, device


def _settle():
    """A full garbage collection before a timed region, so that one pending does not land
    inside the timed epoch: a worker ran 2-3 of them (0.1-0.15 s each with torch's ~170,000
    objects, measured on a Zen 3), and one in a short timed epoch is scaled up with it to a
    full epoch. Every worker settles before timing, alike. (It removes one source of noise;
    P = 1 at batch 32 still varied by ±20 % between runs here.)"""
    import gc

    gc.collect()


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker_idle(cfg):
    torch, x, y, device = _load(cfg)
    import reglab.engine  # noqa: F401  (same imports as the reglab workers)
    return {}


def _reglab_members(size):
    from reglab.engine import Member
    from reglab.layers import Dense, Dropout
    from reglab.regularizers import L1L2

    members = []
    for t, seed in population_members(size):
        name, l1, l2, rate = TECHNIQUES[t]

        def reg(l1=l1, l2=l2):
            return L1L2(l1=l1, l2=l2) if (l1 or l2) else None

        members.append(Member([
            Dense(HIDDEN, activation="relu", input_shape=(INPUT,), kernel_regularizer=reg()),
            Dropout(rate),
            Dense(CLASSES, activation="softmax", kernel_regularizer=reg()),
        ], optimizer="adam", seed=seed, name=f"{name}/seed{seed}"))
    return members


class _EpochTimer:
    def __init__(self, torch, device):
        self.torch, self.device, self.seconds = torch, device, []

    def on_epoch_begin(self, epoch):
        _sync(self.torch, self.device)
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        _sync(self.torch, self.device)
        self.seconds.append(time.perf_counter() - self.start)


#: the mixed precisions the benchmark times beside float32 -> the Keras dtype policy
MIXED_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
SHORT_NAMES = {"bfloat16": "bf16", "float16": "fp16"}


def worker_reglab(cfg):
    torch, x, y, device = _load(cfg)
    from reglab.engine import Population
    from reglab.optimizers import Adam

    n, batch, size = cfg["n"], cfg["batch"], cfg["P"]
    precision = cfg.get("precision", "float32")
    if precision != "float32":
        # as a study with [training] precision = "bfloat16" / "float16": every layer but the
        # output one computes in it (float16 with dynamic loss scaling)
        from reglab import mixed_precision

        mixed_precision.set_global_policy(MIXED_POLICIES[precision])

    def population():
        from reglab.mixed_precision import DTypePolicy
        from reglab.optimizers import LossScaleOptimizer

        members = _reglab_members(size)
        for member in members:  # the output layer in float32, as the study builder does
            member.layers[-1].dtype_policy = DTypePolicy("float32")
            if precision == "float16":
                member.optimizer = LossScaleOptimizer(Adam(1e-3))
        pop = Population(members, device=device, keep_freed_memory=True)
        for opt in pop.plan.optimizers:  # 'adam' is Adam(1e-3); say so explicitly
            inner = opt.inner_optimizer if precision == "float16" else opt
            assert isinstance(inner, Adam) and inner.learning_rate == 1e-3
        return pop

    population().fit(x[:WARMUP_BATCHES * batch], y[:WARMUP_BATCHES * batch],
                     batch_size=batch, epochs=1)
    timer = _EpochTimer(torch, device)
    pop = population()
    _settle()
    _sync(torch, device)
    start = time.perf_counter()
    result = pop.fit(x[:n], y[:n], batch_size=batch, epochs=1, observers=[timer])
    _sync(torch, device)
    fit_s = time.perf_counter() - start
    losses = [r.history["loss"][0] for r in result.members]
    out = {"epoch_s": timer.seconds[0], "fit_s": fit_s,
           "loss_min": min(losses), "loss_max": max(losses)}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _plain_adam(torch, params, device):
    try:
        opt = torch.optim.Adam(params, lr=1e-3, eps=1e-7, fused=True)
        probe = torch.zeros(1, device=device, requires_grad=True)
        probe_opt = torch.optim.Adam([probe], lr=1e-3, fused=True)
        probe.grad = torch.ones_like(probe)
        probe_opt.step()
        return opt, "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=1e-3, eps=1e-7, foreach=True), "foreach"


def _plain_epoch(torch, x, y, batch, technique, seed, device):
    """One epoch of one model, the way a careful PyTorch user writes it. Returns (s, adam impl)."""
    import torch.nn.functional as F
    from torch import nn

    _, l1, l2, rate = technique
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(INPUT, HIDDEN), nn.ReLU(),
                          nn.Dropout(rate) if rate else nn.Identity(),
                          nn.Linear(HIDDEN, CLASSES)).to(device)
    for layer in (model[0], model[3]):  # Keras's initializers
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    kernels = [model[0].weight, model[3].weight]
    opt, impl = _plain_adam(torch, model.parameters(), device)
    model.train()
    n = x.shape[0]
    _settle()
    _sync(torch, device)
    start = time.perf_counter()
    order = torch.randperm(n, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for lo in range(0, n, batch):
        index = order[lo:lo + batch]
        xb, yb = x.index_select(0, index), y.index_select(0, index)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if l1:
            loss = loss + l1 * sum(w.abs().sum() for w in kernels)
        if l2:
            loss = loss + l2 * sum(w.square().sum() for w in kernels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss.detach() * xb.shape[0]
            correct += (logits.argmax(dim=1) == yb).sum()
    float(loss_sum), int(correct)  # as Keras's epoch logs
    _sync(torch, device)
    return time.perf_counter() - start, impl


def worker_plain(cfg):
    torch, x, y, device = _load(cfg)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        # The same malloc settings reglab's engine uses (freed memory kept for reuse), so that
        # the comparison is of the training loops, not of the allocator.
        from reglab.engine.allocator import keep_freed_memory

        keep_freed_memory()
    n, batch = cfg["n"], cfg["batch"]
    # Warm-up: every code path (dropout, l1, l2) on a few batches.
    _plain_epoch(torch, x[:WARMUP_BATCHES * batch], y[:WARMUP_BATCHES * batch], batch,
                 ("warmup", 0.01, 0.01, 0.5), 0, device)
    times, impl = {}, None
    for technique in TECHNIQUES:
        times[technique[0]], impl = _plain_epoch(torch, x[:n], y[:n], batch, technique, 0, device)
    out = {"times": times, "adam": impl}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _ensemble_epoch(torch, x, y, batch, size, device):
    """One epoch of PyTorch's model-ensembling recipe (torch.func.stack_module_state +
    vmap over grad; pytorch.org/tutorials/intermediate/ensembling), written as a PyTorch
    user would for the same P members: the forward written out so that each member's
    dropout rate and penalty strengths are vmapped inputs, each seed's own shuffled
    batches, fused Adam on the stacked parameters. Returns the epoch's seconds."""
    import torch.nn.functional as F
    from torch import nn
    from torch.func import grad, stack_module_state, vmap

    members = population_members(size)
    models = []
    for _, seed in members:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(INPUT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))
        for layer in (model[0], model[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        models.append(model.to(device))
    params, _ = stack_module_state(models)
    l1 = torch.tensor([TECHNIQUES[t][1] for t, _ in members], device=device)
    l2 = torch.tensor([TECHNIQUES[t][2] for t, _ in members], device=device)
    rate = torch.tensor([TECHNIQUES[t][3] for t, _ in members], device=device)

    def loss_fn(p, xb, yb, l1, l2, rate):
        h = torch.relu(xb @ p["0.weight"].T + p["0.bias"])
        keep = (torch.rand_like(h) >= rate).to(h.dtype)
        h = h * keep / (1 - rate)
        logits = h @ p["2.weight"].T + p["2.bias"]
        kernels = (p["0.weight"], p["2.weight"])
        penalty = sum(l1 * k.abs().sum() + l2 * k.square().sum() for k in kernels)
        return F.cross_entropy(logits, yb) + penalty, logits

    step = vmap(grad(loss_fn, has_aux=True), randomness="different")
    opt, _ = _plain_adam(torch, list(params.values()), device)
    seeds = sorted({seed for _, seed in members})
    row_of = torch.tensor([seeds.index(seed) for _, seed in members], device=device)
    n = x.shape[0]
    _settle()
    _sync(torch, device)
    start = time.perf_counter()
    orders = torch.stack([torch.randperm(n, device=device,
                                         generator=torch.Generator(device).manual_seed(s))
                          for s in seeds])
    loss_sum = torch.zeros(len(members), device=device)
    correct = torch.zeros(len(members), dtype=torch.long, device=device)
    for lo in range(0, n, batch):
        index = orders[:, lo:lo + batch]  # one row per seed
        xb = x.index_select(0, index.reshape(-1)).view(len(seeds), -1, INPUT)[row_of]
        yb = y.index_select(0, index.reshape(-1)).view(len(seeds), -1)[row_of]
        grads, logits = step(params, xb, yb, l1, l2, rate)
        for name, value in params.items():
            value.grad = grads[name]
        opt.step()
        with torch.no_grad():
            loss_sum += F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1)
            correct += (logits.argmax(dim=-1) == yb).sum(dim=1)
    loss_sum.tolist(), correct.tolist()  # as Keras's epoch logs
    _sync(torch, device)
    return time.perf_counter() - start


def worker_ensemble(cfg):
    torch, x, y, device = _load(cfg)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        from reglab.engine.allocator import keep_freed_memory

        keep_freed_memory()
    n, batch, size = cfg["n"], cfg["batch"], cfg["P"]
    _ensemble_epoch(torch, x[:WARMUP_BATCHES * batch], y[:WARMUP_BATCHES * batch], batch, size,
                    device)
    return {"epoch_s": _ensemble_epoch(torch, x[:n], y[:n], batch, size, device)}


def _keras_times(cfg, backend):
    """The 9 techniques one model at a time in Keras 3 on ``backend``; seconds per technique.

    KERAS_BACKEND is set in this subprocess's environment by ``run_worker`` before keras is
    imported. On torch (eager), one warm-up model covers every code path. On JAX each model's
    ``fit`` traces and XLA-compiles its own train step (a new jitted function per model, and a
    second compilation for the epoch's last, partial batch), so each model first fits the
    warm-up batches plus one batch of the partial size, is reset to its initial weights and
    optimizer state, and only then is its epoch timed: compilation is not timed.
    """
    if cfg.get("threads") and backend == "torch":
        import torch

        torch.set_num_threads(cfg["threads"])
    import keras

    if keras.backend.backend() != backend:
        raise RuntimeError(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}: keras runs on "
                           f"{keras.backend.backend()}, not {backend}")
    data = np.load(cfg["data"])
    x = data["x"].astype(np.float32) / 255.0
    y = data["y"].astype(np.int64)
    n, batch = cfg["n"], cfg["batch"]
    warm = WARMUP_BATCHES * batch + n % batch  # full batches and the epoch's partial one

    def model(technique):
        _, l1, l2, rate = technique

        def reg():
            return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None

        layers = [keras.Input((INPUT,)),
                  keras.layers.Dense(HIDDEN, activation="relu", kernel_regularizer=reg())]
        if rate:
            layers.append(keras.layers.Dropout(rate))
        layers.append(keras.layers.Dense(CLASSES, activation="softmax", kernel_regularizer=reg()))
        m = keras.Sequential(layers)
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    compiled = backend == "jax"
    if not compiled:
        model(("warmup", 0.01, 0.01, 0.5)).fit(x[:warm], y[:warm], batch_size=batch, epochs=1,
                                               verbose=0)
    times = {}
    for technique in TECHNIQUES:
        keras.utils.set_random_seed(0)
        m = model(technique)
        if compiled:
            m.optimizer.build(m.trainable_variables)
            weights = m.get_weights()
            slots = [v.numpy() for v in m.optimizer.variables]
            m.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, verbose=0, shuffle=True)
            m.set_weights(weights)
            for v, value in zip(m.optimizer.variables, slots):
                v.assign(value)
        _settle()
        start = time.perf_counter()
        m.fit(x[:n], y[:n], batch_size=batch, epochs=1, verbose=0, shuffle=True)
        times[technique[0]] = time.perf_counter() - start
    out = {"times": times, "keras": keras.__version__, "backend": keras.backend.backend()}
    if compiled:
        import jax

        out["jax"] = jax.__version__
    return out


def worker_keras(cfg):
    return _keras_times(cfg, "torch")


def worker_keras_jax(cfg):
    return _keras_times(cfg, "jax")


WORKERS = {"idle": worker_idle, "reglab": worker_reglab, "plain": worker_plain,
           "ensemble": worker_ensemble, "keras": worker_keras, "keras_jax": worker_keras_jax}

# The Keras backend of each Keras worker, chosen in the subprocess's environment (Keras reads
# KERAS_BACKEND once, at import).
KERAS_BACKENDS = {"keras": "torch", "keras_jax": "jax"}


def worker_env(cfg: dict) -> dict:
    """The environment of the subprocess that runs ``cfg``."""
    env = dict(os.environ)
    backend = KERAS_BACKENDS.get(cfg["kind"])
    if backend is None:
        return env
    env["KERAS_BACKEND"] = backend
    threads = cfg.get("threads")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    if backend == "jax":
        if cfg["device"] == "cpu":
            env["JAX_PLATFORMS"] = "cpu"
        if threads == 1:  # XLA's CPU backend on one thread
            env["XLA_FLAGS"] = " ".join(filter(None, [
                env.get("XLA_FLAGS"),
                "--xla_cpu_multi_thread_eigen=false"]))
    return env


def cpu_pressure_us() -> int | None:
    """Total microseconds some task waited for a CPU (Linux PSI), or None."""
    try:
        with open("/proc/pressure/cpu") as f:
            return int(f.readline().split("total=")[1])
    except (OSError, IndexError, ValueError):
        return None


def run_worker(cfg: dict) -> dict:
    pressure, start = cpu_pressure_us(), time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(cfg)],
                          stdout=subprocess.PIPE, text=True, env=worker_env(cfg))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {cfg['kind']} failed (exit {proc.returncode}): "
                           f"{proc.stdout[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    after = cpu_pressure_us()
    if pressure is not None and after is not None:
        # share of the worker's wall time in which some runnable task waited for a CPU:
        # a sign that something else competed for the cores
        out["cpu_pressure"] = (after - pressure) / 1e6 / (time.perf_counter() - start)
    return out


# -- machine floors ---------------------------------------------------------------------------

def measure_machine(device_name: str) -> dict:
    import torch

    device = torch.device(device_name)

    def median_time(fn, runs):
        fn()
        _sync(torch, device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            _sync(torch, device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def matmul_seconds(size):
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        out = torch.empty(size, size, device=device)
        return median_time(lambda: torch.matmul(a, b, out=out), 5)

    def copy_seconds(count):
        src = torch.ones(count, device=device)
        dst = torch.empty_like(src)
        return median_time(lambda: dst.copy_(src), 7)

    size = 2048 if device.type == "cpu" else 8192
    count = 64 * 2**20  # 256 MB of float32
    mm, cp = matmul_seconds(size), copy_seconds(count)
    return {"matmul_size": size, "matmul_gflops": 2 * size**3 / mm / 1e9,
            "copy_mb": count * 4 / 2**20, "bandwidth_gbs": 2 * count * 4 / cp / 1e9}


def train_flops_per_sample() -> int:
    forward = 2 * (INPUT * HIDDEN + HIDDEN * CLASSES)
    backward = (2 * INPUT * HIDDEN          # dW1 (no dX for the input layer)
                + 2 * HIDDEN * CLASSES      # dW2
                + 2 * HIDDEN * CLASSES)     # dX2 (gradient into the hidden layer)
    return forward + backward


def floors(batch: int, machine: dict) -> dict:
    flops = train_flops_per_sample() * FULL_N
    steps = math.ceil(FULL_N / batch)
    traffic = 7 * 4 * PARAMS * steps  # param, grad, m, v read; param, m, v written
    compute = flops / (machine["matmul_gflops"] * 1e9)
    memory = traffic / (machine["bandwidth_gbs"] * 1e9)
    return {"flops": flops, "traffic": traffic, "steps": steps, "compute_s": compute,
            "memory_s": memory, "floor_s": max(compute, memory)}


# -- profile ----------------------------------------------------------------------------------

def profile(args, data_path):
    import cProfile
    import pstats

    import torch

    from reglab.engine import Population

    size, batch = max(args.populations), 128 if 128 in args.batches else args.batches[0]
    cfg = {"data": data_path, "device": args.device, "threads": args.threads}
    torch_, x, y, device = _load(cfg)
    n = max(batch, int(round(args.fraction * FULL_N)))
    Population(_reglab_members(size), device=device, keep_freed_memory=True).fit(
        x[:WARMUP_BATCHES * batch], y[:WARMUP_BATCHES * batch], batch_size=batch, epochs=1)
    print(f"profile: P={size}, batch {batch}, first {n} samples ({math.ceil(n / batch)} steps), "
          f"device {device}")
    pop = Population(_reglab_members(size), device=device, keep_freed_memory=True)
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    pop.fit(x[:n], y[:n], batch_size=batch, epochs=1)
    prof.disable()
    print(f"cProfile'd epoch: {time.perf_counter() - start:.3f} s")
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    pop = Population(_reglab_members(size), device=device, keep_freed_memory=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as tp:
        pop.fit(x[:n], y[:n], batch_size=batch, epochs=1)
    print(tp.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


# -- driver -----------------------------------------------------------------------------------

def pressure_note(run: dict) -> str:
    p = run.get("cpu_pressure")
    return "" if p is None else f"  [cpu pressure {100 * p:.0f}%]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", type=int, nargs="+", default=[1, 9, 45])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="train on the first fraction of the 60k images; times are scaled "
                             "to a full epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads in every process (0: torch's default)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: P in {1, 9}, batch 128, fraction 0.2, 1 repeat")
    parser.add_argument("--no-keras", action="store_true",
                        help="skip the Keras 3 baselines (torch and JAX backends)")
    parser.add_argument("--no-keras-jax", action="store_true",
                        help="skip only the Keras 3 on JAX baseline")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", *MIXED_POLICIES],
                        help="reglab's precisions to time (float32 is always timed: the "
                             "comparisons are against it)")
    parser.add_argument("--profile", action="store_true",
                        help="only profile one epoch (fraction) at the largest P with cProfile "
                             "and torch.profiler")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._worker:
        cfg = json.loads(args._worker)
        out = WORKERS[cfg["kind"]](cfg)
        out["maxrss_mb"] = peak_rss_mb()
        print(json.dumps(out), flush=True)
        return
    if args.quick:
        args.populations, args.batches, args.fraction, args.repeats = [1, 9], [128], 0.2, 1
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must lie in (0, 1]")
    for size in args.populations:
        population_members(size)

    began = time.perf_counter()
    from reglab.datasets import fashion_mnist

    (x_train, y_train), _ = fashion_mnist.load_data()
    tmp = tempfile.TemporaryDirectory(prefix="reglab-bench-")
    data_path = os.path.join(tmp.name, "fashion_mnist_train.npz")
    np.savez(data_path, x=x_train.reshape(len(x_train), INPUT), y=y_train)
    assert len(x_train) == FULL_N

    if args.profile:
        profile(args, data_path)
        return

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    n = max(max(args.batches), int(round(args.fraction * FULL_N)))
    scale = FULL_N / n
    have_keras = importlib.util.find_spec("keras") is not None
    keras_ok = not args.no_keras and have_keras
    keras_jax_ok = (not args.no_keras and not args.no_keras_jax and have_keras
                    and importlib.util.find_spec("jax") is not None)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"reglab population benchmark: 784-64-10 MLP, Adam(1e-3), Fashion-MNIST "
          f"({FULL_N} training images), device {args.device}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs "
          f"({cpu}), python {platform.python_version()}")
    print(f"populations {args.populations}, batches {args.batches}, repeats {args.repeats} "
          f"(medians), trained on the first {n} images ({args.fraction:g} of an epoch) and "
          f"scaled x{scale:.3g} to a full epoch; {WARMUP_BATCHES} warm-up batches per subprocess")
    print("members: " + ", ".join(t[0] for t in TECHNIQUES)
          + f"; P=1: baseline; P=9: the 9, seed 0; P=45: the 9 x seeds 0..{SEEDS_AT_45 - 1}")
    if not keras_ok:
        print("Keras 3: skipped (" + ("--no-keras" if args.no_keras else
                                      "`import keras` is not available in this environment") + ")")
    if not keras_jax_ok:
        why = ("--no-keras" if args.no_keras else "--no-keras-jax" if args.no_keras_jax else
               "`import keras` and `import jax` are not both available in this environment "
               "(pip install -e .[bench])")
        print(f"Keras 3 on JAX: skipped ({why})")

    machine = measure_machine(args.device)
    print(f"machine: fp32 matmul {machine['matmul_size']}^3: {machine['matmul_gflops']:.1f} GFLOP/s; "
          f"copy of {machine['copy_mb']:.0f} MB: {machine['bandwidth_gbs']:.1f} GB/s (read+write)")
    idle = run_worker({"kind": "idle", "data": data_path, "device": args.device,
                       "threads": args.threads})
    print(f"peak RSS of a worker that only imports torch + reglab and holds the data: "
          f"{idle['maxrss_mb']:.0f} MB")

    base = {"data": data_path, "device": args.device, "n": n, "threads": args.threads}
    reglab = {(p, b): [] for p in args.populations for b in args.batches}
    mixed_precisions = [m for m in MIXED_POLICIES if m in args.precisions]
    reglab_mixed = {(m, p, b): [] for m in mixed_precisions for p in args.populations
                    for b in args.batches}
    ensemble = {(p, b): [] for p in args.populations for b in args.batches}
    plain = {b: [] for b in args.batches}
    keras_runs = {b: [] for b in args.batches}
    keras_jax_runs = {b: [] for b in args.batches}
    for r in range(args.repeats):
        for b in args.batches:
            plain[b].append(run_worker({**base, "kind": "plain", "batch": b}))
            last = plain[b][-1]
            print(f"  repeat {r + 1}/{args.repeats}: plain   batch {b:<4} 9 techniques "
                  f"{sum(last['times'].values()):.3f} s on {n} images each "
                  f"(baseline {last['times']['baseline']:.3f} s)" + pressure_note(last),
                  flush=True)
            if keras_ok:
                try:
                    keras_runs[b].append(run_worker({**base, "kind": "keras", "batch": b}))
                except RuntimeError as err:
                    print(f"Keras 3: skipped ({err})")
                    keras_ok = False
            if keras_jax_ok:
                try:
                    keras_jax_runs[b].append(run_worker({**base, "kind": "keras_jax",
                                                         "batch": b}))
                except RuntimeError as err:
                    print(f"Keras 3 on JAX: skipped ({err})")
                    keras_jax_ok = False
                else:
                    last = keras_jax_runs[b][-1]
                    print(f"  repeat {r + 1}/{args.repeats}: keras-jax batch {b:<4} 9 techniques "
                          f"{sum(last['times'].values()):.3f} s on {n} images each "
                          f"(baseline {last['times']['baseline']:.3f} s)" + pressure_note(last),
                          flush=True)
            for p in args.populations:
                reglab[(p, b)].append(run_worker({**base, "kind": "reglab", "batch": b, "P": p}))
                last = reglab[(p, b)][-1]
                print(f"  repeat {r + 1}/{args.repeats}: P={p:<3} batch {b:<4} population epoch "
                      f"{last['epoch_s']:.3f} s on {n} images (fit {last['fit_s']:.3f} s)"
                      + pressure_note(last), flush=True)
                for m in mixed_precisions:
                    reglab_mixed[(m, p, b)].append(run_worker(
                        {**base, "kind": "reglab", "batch": b, "P": p, "precision": m}))
                    last = reglab_mixed[(m, p, b)][-1]
                    print(f"  repeat {r + 1}/{args.repeats}: P={p:<3} batch {b:<4} {m} "
                          f"population epoch {last['epoch_s']:.3f} s" + pressure_note(last),
                          flush=True)
                ensemble[(p, b)].append(run_worker({**base, "kind": "ensemble", "batch": b,
                                                    "P": p}))
                last = ensemble[(p, b)][-1]
                print(f"  repeat {r + 1}/{args.repeats}: P={p:<3} batch {b:<4} torch.func "
                      f"ensemble epoch {last['epoch_s']:.3f} s" + pressure_note(last), flush=True)

    def one_at_a_time(runs, size):
        """Sum over the members of the median (over repeats) time of their technique."""
        median = {name: statistics.median(run["times"][name] for run in runs)
                  for name, *_ in TECHNIQUES}
        return sum(median[TECHNIQUES[t][0]] for t, _ in population_members(size))

    print()
    print("plain PyTorch, one model per run, s/model-epoch (medians, scaled to a full epoch; "
          f"Adam {plain[args.batches[0]][0]['adam']}):")
    header = f"  {'technique':<24}" + "".join(f"{'batch ' + str(b):>12}" for b in args.batches)
    print(header + ("   (Keras 3: " + ", ".join(f"batch {b}" for b in args.batches) + ")"
                    if keras_ok else "")
          + ("   (Keras 3 on JAX: " + ", ".join(f"batch {b}" for b in args.batches) + ")"
             if keras_jax_ok else ""))
    for name, *_ in TECHNIQUES:
        line = f"  {name:<24}" + "".join(
            f"{statistics.median(run['times'][name] for run in plain[b]) * scale:12.3f}"
            for b in args.batches)
        if keras_ok:
            line += "   " + "  ".join(
                f"{statistics.median(run['times'][name] for run in keras_runs[b]) * scale:.3f}"
                for b in args.batches)
        if keras_jax_ok:
            line += "   " + "  ".join(
                f"{statistics.median(run['times'][name] for run in keras_jax_runs[b]) * scale:.3f}"
                for b in args.batches)
        print(line)

    print()
    for b in args.batches:
        f = floors(b, machine)
        print(f"floors per model-epoch at batch {b}: compute {f['flops'] / 1e9:.2f} GFLOP "
              f"({train_flops_per_sample()} FLOP/sample) -> {f['compute_s']:.4f} s; Adam traffic "
              f"{f['traffic'] / 1e9:.3f} GB ({f['steps']} steps x {7 * 4 * PARAMS} B) -> "
              f"{f['memory_s']:.4f} s; floor {f['floor_s']:.4f} s")
    print()
    cols = (f"{'P':>3} {'batch':>5} {'reglab s/model-ep':>18} {'plain s/model-ep':>17} "
            f"{'speedup':>8} {'reglab/floor':>13} {'plain/floor':>12} {'reglab RSS MB':>14} "
            f"{'plain RSS MB':>13} {'torch.func s/m-ep':>18} {'vs torch.func':>14}")
    for m in mixed_precisions:
        short = SHORT_NAMES[m]
        cols += f" {short + ' s/model-ep':>16} {short + '/floor':>11}"
    if keras_ok:
        cols += f" {'keras s/model-ep':>17}"
    if keras_jax_ok:
        cols += f" {'keras-jax s/model-ep':>21}"
    print(cols)
    print("-" * len(cols))
    speedups, summary = {}, {}
    for b in args.batches:
        f = floors(b, machine)
        for p in args.populations:
            ours = statistics.median(run["epoch_s"] for run in reglab[(p, b)]) * scale / p
            theirs = one_at_a_time(plain[b], p) * scale / p
            recipe = statistics.median(run["epoch_s"] for run in ensemble[(p, b)]) * scale / p
            speedups[(p, b)] = theirs / ours
            rss = max(run["maxrss_mb"] for run in reglab[(p, b)])
            plain_rss = max(run["maxrss_mb"] for run in plain[b])
            line = (f"{p:>3} {b:>5} {ours:>18.4f} {theirs:>17.4f} {theirs / ours:>7.2f}x "
                    f"{ours / f['floor_s']:>12.1f}x {theirs / f['floor_s']:>11.1f}x "
                    f"{rss:>14.0f} {plain_rss:>13.0f} {recipe:>18.4f} {recipe / ours:>13.2f}x")
            summary[(p, b)] = {"plain": theirs / ours, "recipe": recipe / ours,
                               "floor": ours / f["compute_s"]}
            mixed = {}
            for m in mixed_precisions:
                mixed[m] = statistics.median(run["epoch_s"] for run in reglab_mixed[(m, p, b)]) \
                    * scale / p
                line += f" {mixed[m]:>16.4f} {mixed[m] / f['floor_s']:>10.2f}x"
                summary[(p, b)][m] = {"plain": theirs / mixed[m], "recipe": recipe / mixed[m],
                                      "floor": mixed[m] / f["compute_s"]}
            if keras_ok:
                k = one_at_a_time(keras_runs[b], p) * scale / p
                line += f" {k:>17.4f}"
            if keras_jax_ok:
                k = one_at_a_time(keras_jax_runs[b], p) * scale / p
                line += f" {k:>21.4f}"
                summary[(p, b)]["keras_jax"] = k / ours
                for m in mixed_precisions:
                    summary[(p, b)][m]["keras_jax"] = k / mixed[m]
            print(line)
    print("-" * len(cols))
    print("speedup = plain one-at-a-time / reglab, both per model-epoch; plain one-at-a-time = "
          "sum over the P members of their technique's median plain epoch; x/floor = measured / "
          "max(compute floor, Adam memory floor); plain RSS is one process training the 9 "
          "techniques one after another (one model at a time).")
    if keras_jax_ok:
        first = keras_jax_runs[args.batches[0]][0]
        print(f"keras-jax = Keras {first['keras']} on JAX {first['jax']} (XLA, "
              + ("one thread" if args.threads == 1 else "XLA's default threads")
              + "), one model at a time as plain; each model's train step compiled on warm-up "
              "batches before its timed epoch.")
    if args.device == "cuda":
        print("peak GPU memory (max_memory_allocated): " + ", ".join(
            f"P={p} b={b}: {max(r.get('peak_gpu_mb', 0) for r in reglab[(p, b)]):.0f} MB"
            for b in args.batches for p in args.populations))
    runs = [*plain.values(), *reglab.values(), *keras_runs.values(), *keras_jax_runs.values()]
    worst = max((r.get("cpu_pressure") or 0 for group in runs for r in group), default=0)
    if worst > 0.25 and torch.get_num_threads() > 1:
        print(f"note: other work competed for the CPUs (cpu pressure up to {100 * worst:.0f}%); "
              f"with {torch.get_num_threads()} intra-op threads a descheduled thread stalls "
              "every op, so timings can be off by 10x or more. Rerun with --threads 1.")
    print(f"benchmark wall time: {time.perf_counter() - began:.0f} s")
    b = 128 if 128 in args.batches else args.batches[-1]
    p = 45 if 45 in args.populations else max(args.populations)
    print(f"population speedup at P={p}, batch {b}: {speedups[(p, b)]:.1f}\u00d7 vs plain PyTorch")
    for batch in sorted(args.batches, key=lambda size: size == b):  # batch 128 last
        got = summary[(p, batch)]
        print(f"population at P={p}, batch {batch}: {got['plain']:.2f}\u00d7 vs plain PyTorch, "
              f"{got['recipe']:.2f}\u00d7 vs torch.func ensemble, {got['floor']:.2f}\u00d7 the "
              "compute floor" + (f", {got['keras_jax']:.2f}\u00d7 vs Keras 3 on JAX"
                                 if "keras_jax" in got else ""))
        for m in mixed_precisions:
            mine = got[m]
            print(f"population at P={p}, batch {batch}, {m}: {mine['plain']:.2f}\u00d7 vs "
                  f"plain PyTorch, {mine['recipe']:.2f}\u00d7 vs torch.func ensemble, "
                  f"{mine['floor']:.2f}\u00d7 the fp32 compute floor"
                  + (f", {mine['keras_jax']:.2f}\u00d7 vs Keras 3 on JAX"
                     if "keras_jax" in mine else ""))


if __name__ == "__main__":
    main()
