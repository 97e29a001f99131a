"""Speed of cnnlab against PyTorch (CPU) on the reference networks, in one run.

    python benchmarks/bench_networks.py [--quick] [--rounds 7] [--batch-size 128]
                                        [--networks fmnist-cnn cifar-cnn fmnist-vit]
                                        [--layers [--cpu-time]]

For fmnist-cnn (1 x 28 x 28), cifar-cnn (3 x 32 x 32) and fmnist-vit (cnnlab's default vision
transformer, `build_model("vit")`: 4 x 4 patches, 50 tokens of 64 features, 6 pre-norm encoder
layers; in PyTorch torch.nn.TransformerEncoderLayer with the same state-dict keys) it builds
the network in cnnlab and in PyTorch with the same weights, then times a training step
(forward, cross-entropy, backward, SGD with momentum 0.9; cnnlab.nn modules and
cnnlab.optim.SGD against torch.nn and torch.optim.SGD) and an inference pass (no graph; both
in training mode, which with the vit's dropout 0 is the same function, so PyTorch's eval-only
fused encoder kernel is not what is timed). It prints images per second (the median
over rounds) and the ratio cnnlab / PyTorch as a Markdown table, and the machine.

Each library runs in its own worker process (multiprocessing, "spawn"): the cnnlab worker
never imports torch, so neither library's thread pool (OpenMP for PyTorch, OpenBLAS for NumPy)
shares a process with the other's work. The parent draws weights and data with NumPy, sends the
same arrays to both workers, checks that they compute the same logits and first loss, and then
alternates: round by round it asks one worker, then the other, to time a number of calls of one
task (the order swaps every round), so both see the same machine load. Only the parent
prints. The machine line ends with the load average before and after: above the core count,
other processes took turns with the workers, and every multi-threaded call of either library
may have waited for a scheduler time slice (OpenBLAS, with one meeting of its threads per
product, lost 3-10x then; PyTorch about 2-5x).

With --layers it prints instead, per network, each layer's forward and backward time in a
training step and the step's peak memory (benchmarks/layers.py, which says how).
"""

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import time

import numpy as np

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
    "fmnist-vit": {"input": (1, 28, 28), "vit": {}},  # build_model("vit")'s default options
}  # fmt: skip

LEARNING_RATE = 0.01
MOMENTUM = 0.9
TASKS = ("training step", "inference")
SECONDS_PER_ROUND = 0.3  # PyTorch's time per round and task; cnnlab runs as many calls


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


def vit_weights(spec, rng):
    """The state dict of cnnlab's vit for `spec`, initialised as cnnlab does (the parent
    imports cnnlab for this only; it times nothing)."""
    from cnnlab.models import build_model

    channels, height, width = spec["input"]
    model = build_model("vit", in_channels=channels, input_size=(height, width),
                        generator=rng, **spec["vit"])
    return {key: np.array(value) for key, value in model.state_dict().items()}


# ----- the two libraries (each imported only inside its own worker) -------------------------
class CnnlabNetwork:
    """The network in cnnlab: nn modules, CrossEntropyLoss and optim.SGD with momentum."""

    def __init__(self, spec, weights):
        import cnnlab
        import cnnlab.nn
        import cnnlab.optim

        self.cnnlab = cnnlab
        if "vit" in spec:
            from cnnlab.models import build_model

            channels, height, width = spec["input"]
            self.model = build_model("vit", in_channels=channels, input_size=(height, width),
                                     **spec["vit"])
            self.model.load_state_dict(weights)
        else:
            self.model = self._layers(spec["layers"], weights)
        self.optimizer = cnnlab.optim.SGD(
            self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM
        )
        self.loss = cnnlab.nn.CrossEntropyLoss()

    def _layers(self, layers, weights):
        cnnlab = self.cnnlab
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
        model = cnnlab.nn.Sequential(*modules)
        names = [name for name, _ in model.named_parameters()]
        model.load_state_dict(dict(zip(names, weights, strict=True)))
        return model

    def train_step(self, images, labels):
        self.optimizer.zero_grad()
        loss = self.loss(self.model(self.cnnlab.Tensor(images)), labels)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, images):
        with self.cnnlab.no_grad():
            return self.model(self.cnnlab.Tensor(images)).data

    @staticmethod
    def describe():
        import cnnlab

        return f"NumPy {np.__version__} (cnnlab: {cnnlab.get_num_threads()} threads)"


class TorchNetwork:
    """The same network in PyTorch, loaded with the same weights."""

    def __init__(self, spec, weights):
        import torch

        self.torch = torch
        if "vit" in spec:
            self.model = self._vit(spec)
            self.model.load_state_dict({key: torch.from_numpy(value)
                                        for key, value in weights.items()}, strict=True)
        else:
            self.model = self._layers(spec["layers"], weights)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM
        )
        self.loss = torch.nn.CrossEntropyLoss()

    def _vit(self, spec):
        """cnnlab's vit in torch.nn: patch Conv2d, tokens, encoder layers, norm, head."""
        torch = self.torch
        options = {"patch_size": 4, "hidden_dim": 64, "num_layers": 6, "num_heads": 4,
                   "mlp_dim": 128, "dropout": 0.0, **spec["vit"]}
        channels, height, width = spec["input"]
        patch, dim = options["patch_size"], options["hidden_dim"]
        patches = (height // patch) * (width // patch)

        class Tokens(torch.nn.Module):  # class token in front, positions added
            def __init__(self):
                super().__init__()
                self.class_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
                self.pos_embedding = torch.nn.Parameter(torch.zeros(1, 1 + patches, dim))

            def forward(self, x):
                tokens = x.flatten(2).transpose(1, 2)
                first = self.class_token.expand(x.shape[0], -1, -1)
                return torch.cat([first, tokens], dim=1) + self.pos_embedding

        class ClassToken(torch.nn.Module):
            def forward(self, x):
                return x[:, 0]

        encoders = [torch.nn.TransformerEncoderLayer(
            dim, options["num_heads"], options["mlp_dim"], options["dropout"], "gelu",
            batch_first=True, norm_first=True) for _ in range(options["num_layers"])]
        return torch.nn.Sequential(
            torch.nn.Conv2d(channels, dim, patch, stride=patch), Tokens(), *encoders,
            torch.nn.LayerNorm(dim), ClassToken(), torch.nn.Linear(dim, 10))

    def _layers(self, layers, weights):
        torch = self.torch
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
        model = torch.nn.Sequential(*modules)
        with torch.no_grad():
            for param, weight in zip(model.parameters(), weights, strict=True):
                param.copy_(torch.from_numpy(weight))
        return model

    def train_step(self, images, labels):
        torch = self.torch
        self.optimizer.zero_grad()
        loss = self.loss(self.model(torch.from_numpy(images)), torch.from_numpy(labels))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def infer(self, images):
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(images)).numpy()

    @staticmethod
    def describe():
        import torch

        return f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)"


LIBRARIES = {"cnnlab": CnnlabNetwork, "PyTorch": TorchNetwork}


# ----- worker: one library, driven over a pipe -----------------------------------------------
def worker(library, connection):
    """Serve requests until "stop". Every request is (command, *arguments); each gets one reply.

    ("describe",) -> str; ("build", spec, weights, images, labels) -> None;
    ("logits",) -> ndarray; ("train_step",) -> loss; ("time", task, calls) -> seconds.
    """
    network_class, network, data = LIBRARIES[library], None, None
    while True:
        command, *arguments = connection.recv()
        if command == "stop":
            return
        if command == "describe":
            reply = network_class.describe()
        elif command == "build":
            spec, weights, images, labels = arguments
            network, data = network_class(spec, weights), (images, labels)
            reply = None
        elif command == "logits":
            reply = np.asarray(network.infer(data[0]))
        elif command == "train_step":
            reply = network.train_step(*data)
        elif command == "time":
            task, calls = arguments
            call = network.train_step if task == "training step" else network.infer
            arguments = data if task == "training step" else data[:1]
            start = time.perf_counter()
            for _ in range(calls):
                call(*arguments)
            reply = time.perf_counter() - start
        else:
            raise ValueError(f"worker: unknown command {command!r}")
        connection.send(reply)


class Workers:
    """One spawned worker process per library, asked in turn."""

    def __init__(self, target=worker):
        context = multiprocessing.get_context("spawn")
        self.connections, self.processes = {}, []
        for library in LIBRARIES:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=target, args=(library, child_end), daemon=True)
            process.start()
            child_end.close()
            self.connections[library] = parent_end
            self.processes.append(process)

    def ask(self, library, *request):
        self.connections[library].send(request)
        return self.connections[library].recv()

    def ask_all(self, *request):
        return {library: self.ask(library, *request) for library in LIBRARIES}

    def close(self):
        for connection in self.connections.values():
            connection.send(("stop",))
        for process in self.processes:
            process.join()


# ----- parent -------------------------------------------------------------------------------
def check_same_network(workers):
    """Both workers compute the same thing: logits, then one training step's loss."""
    logits = workers.ask_all("logits")
    difference = np.abs(logits["cnnlab"] - logits["PyTorch"]).max()
    assert difference < 1e-3, f"logits differ by {difference}"
    losses = workers.ask_all("train_step")
    assert abs(losses["cnnlab"] - losses["PyTorch"]) < 1e-3, losses


def time_rounds(workers, task, rounds, batch_size):
    """images/s per library: median over rounds; the libraries alternate, the order swaps."""
    workers.ask_all("time", task, 1)  # warm-up, untimed
    seconds = workers.ask("PyTorch", "time", task, 1)
    calls = max(1, math.ceil(SECONDS_PER_ROUND / seconds))
    rates = {library: [] for library in LIBRARIES}
    order = list(LIBRARIES)
    for _ in range(rounds):
        for library in order:
            rates[library].append(calls * batch_size / workers.ask(library, "time", task, calls))
        order.reverse()
    return {library: statistics.median(values) for library, values in rates.items()}


def load_average():
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine(workers, loads):
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    described = workers.ask_all("describe")
    load = ""
    if None not in loads:  # other processes on a shared machine move every number
        load = f"; load average {loads[0]:.1f} before, {loads[1]:.1f} after"
    return (
        f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"{described['cnnlab']}, {described['PyTorch']}; one process per library{load}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 7")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per task")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--layers", action="store_true",
                        help="per-layer times and peak memory of a training step instead")
    parser.add_argument("--cpu-time", action="store_true",
                        help="with --layers: each process's CPU time instead of wall-clock time")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    if rounds < 1 or args.batch_size < 1:
        parser.error(f"--rounds and --batch-size must be positive, got {rounds}, {args.batch_size}")
    if args.layers:
        import layers  # benchmarks/layers.py, beside this file

        layers.main(args.networks, args.batch_size, rounds, "cpu" if args.cpu_time else "wall")
        return
    rng = np.random.default_rng(0)

    load_before, workers = load_average(), Workers()
    try:
        rows = []
        for name in args.networks:
            spec = NETWORKS[name]
            weights = vit_weights(spec, rng) if "vit" in spec else make_weights(
                spec["layers"], rng)
            images = rng.standard_normal((args.batch_size, *spec["input"])).astype(np.float32)
            labels = rng.integers(0, 10, args.batch_size)
            workers.ask_all("build", spec, weights, images, labels)
            check_same_network(workers)
            for task in TASKS:
                rate = time_rounds(workers, task, rounds, args.batch_size)
                rows.append((name, task, rate["cnnlab"], rate["PyTorch"]))
        description = machine(workers, (load_before, load_average()))
    finally:
        workers.close()

    print(f"Batch size {args.batch_size}; {description}\n")
    print("| network | task | cnnlab images/s | PyTorch images/s | cnnlab / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for name, task, ours, theirs in rows:
        print(f"| {name} | {task} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    main()
