"""Time to explain one image: saliency, Grad-CAM and occlusion on the default CNN.

    python benchmarks/bench_explain.py [--rounds 20] [--threads N]

The lab calls these while a user clicks, so each should take well under 100 ms for one
28 x 28 image on the default CNN (build_model("cnn"), random weights: the time does not depend
on their values). Grad-CAM on relu2 (the last convolution's output), upsampled to the image;
occlusion with a 4 x 4 patch every 2 pixels (13 x 13 = 169 occluded copies, one forward pass).
Prints the median and best of the rounds per method, the CPU, the threads and the load average
(other processes on a shared machine slow every number).
"""

import argparse
import os
import platform
import time

import numpy as np

import cnnlab
from cnnlab.explain import grad_cam, occlusion, saliency
from cnnlab.models import build_model

METHODS = {
    "saliency": lambda model, image: saliency(model, image),
    "grad_cam relu2": lambda model, image: grad_cam(model, image, "relu2"),
    "occlusion 4/2": lambda model, image: occlusion(model, image, patch=4, stride=2),
}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="cnnlab's threads; Default: as it starts (cnnlab.get_num_threads)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--rounds and --threads must be positive, got {args.rounds}, "
                     f"{args.threads}")
    if args.threads is not None:
        cnnlab.set_num_threads(args.threads)
    model = build_model("cnn", generator=np.random.default_rng(0)).eval()
    image = np.random.default_rng(1).standard_normal((1, 1, 28, 28)).astype(np.float32)
    load_before = os.getloadavg()[0]
    print(f"one 28 x 28 image, default CNN, {args.rounds} rounds after one warm-up")
    print("| method | median ms | best ms |")
    print("|---|---:|---:|")
    for name, method in METHODS.items():
        method(model, image)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            method(model, image)
            times.append(time.perf_counter() - start)
        print(f"| {name} | {1000 * np.median(times):.1f} | {1000 * min(times):.1f} |")
    print(f"{cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"NumPy {np.__version__}, cnnlab {cnnlab.get_num_threads()} thread(s), "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
