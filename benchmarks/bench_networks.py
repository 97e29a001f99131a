"""Speed of cnnlab against PyTorch (CPU) on the two reference networks, in one run.

    python benchmarks/bench_networks.py [--quick] [--batch-size 128]

For fmnist-cnn (1 x 28 x 28) and cifar-cnn (3 x 32 x 32) it builds the network in cnnlab and
in PyTorch with the same weights, then times a training step (forward, cross-entropy,
backward, SGD with momentum 0.9; cnnlab.nn modules and cnnlab.optim.SGD against torch.nn and
torch.optim.SGD) and an inference pass (no graph), alternating the two
libraries round by round so that both see the same machine load. It prints images per second
(the median over rounds) and the ratio cnnlab / PyTorch as a Markdown table, and the machine.
"""

import argparse
import os
import platform
import statistics
import time
from functools import partial

import numpy as np
import torch

import cnnlab
import cnnlab.nn
import cnnlab.optim

# Each layer: ("conv", C_in, C_out) 3x3 padding 1, ("pool",) 2x2 max, ("relu",), ("flatten",),
# ("linear", in_features, out_features).
NETWORKS = {
    "fmnist-cnn": {
        "input": (1, 28, 28),
        "layers": [
            ("conv", 1, 32), ("relu",), ("pool",),
            ("conv", 32, 64), ("relu",), ("pool",),
            ("flatten",), ("linear", 3136, 128), ("relu",), ("linear", 128, 10),
        ],
    },
    "cifar-cnn": {
        "input": (3, 32, 32),
        "layers": [
            ("conv", 3, 32), ("relu",), ("conv", 32, 32), ("relu",), ("pool",),
            ("conv", 32, 64), ("relu",), ("conv", 64, 64), ("relu",), ("pool",),
            ("flatten",), ("linear", 4096, 256), ("relu",), ("linear", 256, 10),
        ],
    },
}  # fmt: skip

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def make_weights(layers, rng):
    """PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), in float32."""
    weights = []
    for layer in layers:
        if layer[0] == "conv":
            shape, fan_in = (layer[2], layer[1], 3, 3), layer[1] * 9
        elif layer[0] == "linear":
            shape, fan_in = (layer[2], layer[1]), layer[1]
        else:
            continue
        bound = 1 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, shape).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, shape[0]).astype(np.float32))
    return weights


class CnnlabNetwork:
    """The network in cnnlab: nn modules, CrossEntropyLoss and optim.SGD with momentum."""

    def __init__(self, layers, weights):
        modules = []
        for layer in layers:
            if layer[0] == "conv":
                modules.append(cnnlab.nn.Conv2d(layer[1], layer[2], 3, padding=1))
            elif layer[0] == "relu":
                modules.append(cnnlab.nn.ReLU())
            elif layer[0] == "pool":
                modules.append(cnnlab.nn.MaxPool2d(2))
            elif layer[0] == "flatten":
                modules.append(cnnlab.nn.Flatten())
            else:
                modules.append(cnnlab.nn.Linear(layer[1], layer[2]))
        self.model = cnnlab.nn.Sequential(*modules)
        names = [name for name, _ in self.model.named_parameters()]
        self.model.load_state_dict(dict(zip(names, weights, strict=True)))
        self.optimizer = cnnlab.optim.SGD(
            self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM
        )
        self.loss = cnnlab.nn.CrossEntropyLoss()

    def train_step(self, images, labels):
        self.optimizer.zero_grad()
        loss = self.loss(self.model(cnnlab.Tensor(images)), labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, images):
        with cnnlab.no_grad():
            return self.model(cnnlab.Tensor(images)).data


class TorchNetwork:
    """The same network in PyTorch, loaded with the same weights."""

    def __init__(self, layers, weights):
        modules = []
        for layer in layers:
            if layer[0] == "conv":
                modules.append(torch.nn.Conv2d(layer[1], layer[2], 3, padding=1))
            elif layer[0] == "relu":
                modules.append(torch.nn.ReLU())
            elif layer[0] == "pool":
                modules.append(torch.nn.MaxPool2d(2))
            elif layer[0] == "flatten":
                modules.append(torch.nn.Flatten())
            else:
                modules.append(torch.nn.Linear(layer[1], layer[2]))
        self.model = torch.nn.Sequential(*modules)
        with torch.no_grad():
            for param, weight in zip(self.model.parameters(), weights, strict=True):
                param.copy_(torch.from_numpy(weight))
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM
        )
        self.loss = torch.nn.CrossEntropyLoss()

    def train_step(self, images, labels):
        self.optimizer.zero_grad()
        loss = self.loss(self.model(torch.from_numpy(images)), torch.from_numpy(labels))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, images):
        with torch.no_grad():
            return self.model(torch.from_numpy(images)).numpy()


def check_same_network(ours, theirs, images, labels):
    """The two networks compute the same thing: logits, then one training step's loss."""
    difference = np.abs(ours.infer(images) - theirs.infer(images)).max()
    assert difference < 1e-3, f"logits differ by {difference}"
    loss_ours, loss_theirs = ours.train_step(images, labels), theirs.train_step(images, labels)
    assert abs(loss_ours - loss_theirs) < 1e-3, (loss_ours, loss_theirs)


def time_rounds(contenders, rounds, calls, batch_size):
    """images/s per contender: median over rounds, contenders alternating within each round."""
    rates = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            start = time.perf_counter()
            for _ in range(calls):
                call()
            rates[name].append(calls * batch_size / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def machine():
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 20 s)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 7
    rng = np.random.default_rng(0)

    rows = []
    for name in args.networks:
        spec = NETWORKS[name]
        weights = make_weights(spec["layers"], rng)
        images = rng.standard_normal((args.batch_size, *spec["input"])).astype(np.float32)
        labels = rng.integers(0, 10, args.batch_size)
        ours = CnnlabNetwork(spec["layers"], weights)
        theirs = TorchNetwork(spec["layers"], weights)
        check_same_network(ours, theirs, images, labels)
        # Calls per round: enough for about a quarter of a second of PyTorch training.
        calls = 2 if name == "fmnist-cnn" else 1
        tasks = {
            "training step": {
                "cnnlab": partial(ours.train_step, images, labels),
                "PyTorch": partial(theirs.train_step, images, labels),
            },
            "inference": {
                "cnnlab": partial(ours.infer, images),
                "PyTorch": partial(theirs.infer, images),
            },
        }
        for task, contenders in tasks.items():
            task_calls = calls * (3 if task == "inference" else 1)
            rate = time_rounds(contenders, rounds, task_calls, args.batch_size)
            rows.append((name, task, rate["cnnlab"], rate["PyTorch"]))

    print(f"Batch size {args.batch_size}; {machine()}\n")
    print("| network | task | cnnlab images/s | PyTorch images/s | cnnlab / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for name, task, ours, theirs in rows:
        print(f"| {name} | {task} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
