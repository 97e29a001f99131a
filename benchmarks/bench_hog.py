"""Speed of cnnlab.features.hog against a Python loop of skimage.feature.hog, in one run.

    python benchmarks/bench_hog.py [--images 10000] [--size 28] [--channels 0] [--rounds 3]

Times HOG (9 orientations, 8 x 8 cells, 3 x 3 blocks, L2-Hys) of random images, cnnlab on
the whole batch and scikit-image one image at a time, alternating the two round by round so
that both see the same machine load. Prints both times (the best round), the ratio, the
largest difference between the two outputs, and the machine.
"""

import argparse
import os
import platform
import time

import numpy as np
import skimage
import skimage.feature

from cnnlab.features import hog


def time_once(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=0, help="0: grey (N, H, W)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.images, args.size, args.size)
    if args.channels:
        shape = (args.images, args.channels, args.size, args.size)
    images = rng.random(shape)

    def ours():
        return hog(images)

    def theirs():
        if args.channels:
            return np.stack(
                [skimage.feature.hog(im.transpose(1, 2, 0), channel_axis=-1) for im in images]
            )
        return np.stack([skimage.feature.hog(image) for image in images])

    ours_times, theirs_times = [], []
    for _ in range(args.rounds):
        seconds, ours_result = time_once(ours)
        ours_times.append(seconds)
        seconds, theirs_result = time_once(theirs)
        theirs_times.append(seconds)
    best_ours, best_theirs = min(ours_times), min(theirs_times)
    print(f"HOG of {args.images} images of shape {shape[1:]}, best of {args.rounds} rounds")
    print(f"  cnnlab.features.hog (batch):  {best_ours:8.3f} s")
    print(f"  skimage.feature.hog (loop):   {best_theirs:8.3f} s")
    print(f"  ratio skimage / cnnlab:       {best_theirs / best_ours:8.1f} x")
    print(f"  max |difference|:             {np.abs(ours_result - theirs_result).max():.1e}")
    print(
        f"  numpy {np.__version__}, scikit-image {skimage.__version__},"
        f" {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
