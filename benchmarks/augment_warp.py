"""Times one fused warp of a (128, 28, 28, 1) batch against a per-image loop.

Baselines, measured in the same run: the same ``warp`` called once per image, and (if scipy is
installed) ``scipy.ndimage.affine_transform`` per image and channel, which is what Keras's
``ImageDataGenerator`` does. Prints medians and ratios.

    python benchmarks/augment_warp.py [--n 128] [--repeats 21] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reglab.augment import AffineSpec, sample_transforms, warp


def median_seconds(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((args.n, args.size, args.size, 1), generator=generator).to(device)
    spec = AffineSpec(
        rotation_range=15,
        width_shift_range=0.1,
        height_shift_range=0.1,
        shear_range=10,
        zoom_range=0.1,
        horizontal_flip=True,
    )
    transforms = sample_transforms(spec, args.n, args.size, args.size, generator, device=device)

    fused = median_seconds(lambda: warp(images, transforms), args.repeats, sync)
    looped = median_seconds(
        lambda: [warp(images[i : i + 1], transforms[i : i + 1]) for i in range(args.n)],
        args.repeats,
        sync,
    )
    print(f"device={device} batch={tuple(images.shape)} repeats={args.repeats} (medians)")
    print(f"fused warp:               {fused * 1e3:8.3f} ms")
    print(
        f"per-image warp loop:      {looped * 1e3:8.3f} ms   ratio loop/fused = {looped / fused:6.1f}x"
    )
    try:
        from scipy import ndimage
    except ImportError:
        return
    x, m = images.cpu().double().numpy(), transforms.cpu().double().numpy()
    scipy_loop = median_seconds(
        lambda: [
            ndimage.affine_transform(
                x[i, :, :, 0], m[i, :2, :2], m[i, :2, 2], order=1, mode="nearest"
            )
            for i in range(args.n)
        ],
        args.repeats,
        lambda: None,
    )
    print(
        f"per-image scipy (Keras):  {scipy_loop * 1e3:8.3f} ms   ratio scipy/fused = {scipy_loop / fused:6.1f}x"
    )


if __name__ == "__main__":
    main()
