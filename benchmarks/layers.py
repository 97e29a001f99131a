"""Where a training step's time goes, layer by layer, in cnnlab and in PyTorch, in one run.

    python benchmarks/bench_networks.py --layers [--cpu-time] [--rounds 7] [--batch-size 128]
                                        [--networks cifar-cnn]
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/bench_networks.py --layers --cpu-time

For each network it prints one Markdown table: per layer of the model (the same layers as
bench_networks.NETWORKS), the forward and the backward milliseconds of a training step in
each library and the ratio PyTorch time / cnnlab time (above 1: cnnlab is faster, as the
images/s ratio of the main table). Then the loss, the optimiser (zero_grad and step), the rest
of the step (graph bookkeeping, the accumulation of parameter gradients) and the whole step.
A last table gives each network's step time and the peak memory of a training step: how far
each process's resident memory grew above its baseline after import and model build.

Both libraries run a real training step, instrumented:
- cnnlab: each top-level module's forward is timed around its call; every graph node made
  during that call (each `Function` recorded by `Tensor._make`) gets its `backward` wrapped
  in a timer, so a layer's backward is the sum of its nodes' backward calls within
  `loss.backward()`.
- PyTorch: each module's forward is timed around its call; a hook on each module's output
  tensor stamps the moment its gradient is ready, just before the module's backward starts.
  The autograd engine runs a module's nodes (and the accumulation of its parameters'
  gradients) before those of the module below it, so a layer's backward is the time from its
  output's stamp to the next stamp down (for the first layer: to the end of backward).

Peak memory: each network gets two fresh worker processes (one per library, as the main
table). After the build, /proc/self/clear_refs resets the kernel's resident high-water mark
(VmHWM) to the current resident size; after a few training steps, VmHWM minus that baseline is
the step's peak growth. Where clear_refs cannot be written, the process's ru_maxrss stands in
(an overestimate when import peaked higher).

Threads: each library's default (cnnlab: CNNLAB_NUM_THREADS, else OPENBLAS_NUM_THREADS, else
the cores; PyTorch: OMP_NUM_THREADS, else the cores); set both environment variables to 1 to
compare single-threaded, and --cpu-time to read each process's CPU time (all its threads)
instead of the wall clock: single-threaded, that is the time it would take on an idle core,
whatever the load (with more threads it also counts their spinning). The machine block above each
table gives the CPU, its vector extensions, NumPy's OpenBLAS kernel and the load average.
"""

import gc
import os
import resource
import statistics
import time

import bench_networks as bench
import numpy as np

EXTENSIONS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")  # fmt: skip
MEMORY_STEPS = 3  # training steps whose peak is measured (the first makes momentum buffers)
MB = 1 << 20
# wall: elapsed time. cpu: the CPU time of the process, all its threads (on a loaded machine a
# single-threaded run's CPU time is what it would take alone; with threads it adds their spin).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# ----- the machine ---------------------------------------------------------------------------
def cpu_description(cpuinfo="/proc/cpuinfo"):
    """'model name; vector extensions: present ...; absent ...' from /proc/cpuinfo."""
    model, flags = "unknown CPU", None
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and flags is None:
                    flags = set(value.split())
    except OSError:
        pass
    if flags is None:
        return f"{model}; vector extensions unknown (no flags in {cpuinfo})"
    present = [name for name in EXTENSIONS if name in flags]
    absent = [name for name in EXTENSIONS if name not in flags]
    return (f"{model}, {os.cpu_count()} cores; vector extensions present: "
            f"{' '.join(present) or 'none'}; absent: {' '.join(absent) or 'none'}")  # fmt: skip


def openblas_description():
    """Which OpenBLAS NumPy calls and its kernel (threadpoolctl if installed, else the library's
    own openblas_get_config / get_corename through ctypes, else NumPy's build configuration)."""
    try:
        import threadpoolctl

        for info in threadpoolctl.threadpool_info():
            if info.get("internal_api") == "openblas":
                return (f"OpenBLAS {info.get('version')}, kernel {info.get('architecture')}, "
                        f"{info.get('num_threads')} threads (threadpoolctl)")  # fmt: skip
    except ImportError:
        pass
    import ctypes

    from cnnlab.blas import BLAS

    if BLAS.path is not None:
        try:
            library = ctypes.CDLL(BLAS.path)
            texts = []
            for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_config64_"):
                function = getattr(library, name)
                function.restype = ctypes.c_char_p
                texts.append(function().decode())
            return f"OpenBLAS kernel {texts[0]} ({texts[1]})"
        except (OSError, AttributeError):
            pass
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    return f"{blas.get('name')} {blas.get('version')} (as built; its kernel at run time unknown)"


# ----- memory ------------------------------------------------------------------------------
def resident_bytes():
    """(VmRSS, VmHWM) of this process in bytes, from /proc/self/status (None where absent)."""
    values = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return values.get("VmRSS"), values.get("VmHWM")


def step_memory(train_step, data, steps=MEMORY_STEPS):
    """(bytes the resident memory grew above its level before the steps at its peak, method)."""
    gc.collect()
    baseline, _ = resident_bytes()
    method = "VmHWM"
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # reset the resident high-water mark to the current size
    except OSError:
        method = "ru_maxrss"
    for _ in range(steps):
        train_step(*data)
    _, peak = resident_bytes()
    if method == "ru_maxrss" or baseline is None or peak is None:
        method, peak = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        baseline = baseline or 0
    return peak - baseline, method


# ----- one instrumented training step per library --------------------------------------------
def cnnlab_step(network, images, labels, now=time.perf_counter):
    """Times of one training step: {row: [forward s, backward s, total s]}, rows the module
    indices, then "loss", "optimizer", "step"."""
    from cnnlab.tensor import Tensor

    modules = list(network.model)
    times = {row: [0.0, 0.0, 0.0] for row in [*range(len(modules)), "loss", "optimizer", "step"]}
    made, wrapped = [], []
    make = Tensor.__dict__["_make"]

    def recording_make(cls, function_class, *inputs, **options):
        out = make.__func__(cls, function_class, *inputs, **options)
        if out._function is not None:
            made.append(out._function)
        return out

    def time_backward(function, row):
        backward = function.backward

        def timed(grad_output):
            start = now()
            grads = backward(grad_output)
            times[row][1] += now() - start
            return grads

        function.backward = timed  # a cycle (function -> timed -> function), cut after backward
        wrapped.append(function)

    def forward(row, call, *arguments):
        made.clear()
        start = now()
        out = call(*arguments)
        times[row][0] += now() - start
        for function in made:
            time_backward(function, row)
        return out

    step_start = now()
    network.optimizer.zero_grad()
    Tensor._make = classmethod(recording_make)
    try:
        x = Tensor(images)
        for row, module in enumerate(modules):
            x = forward(row, module, x)
        loss = forward("loss", network.loss, x, labels)
    finally:
        Tensor._make = make
    loss.backward()
    for function in wrapped:  # else the saved arrays wait for the garbage collector
        del function.backward
    start = now()
    network.optimizer.step()
    loss.item()
    end = now()
    times["optimizer"][2] = end - start
    times["step"][2] = end - step_start
    return times


def torch_step(network, images, labels, now=time.perf_counter):
    """As cnnlab_step, for the PyTorch network (stamps on each module's output gradient)."""
    torch = network.torch
    modules = list(network.model)
    times = {row: [0.0, 0.0, 0.0] for row in [*range(len(modules)), "loss", "optimizer", "step"]}
    stamps = {}

    def stamp(row):
        def hook(grad):
            stamps[row] = now()

        return hook

    step_start = now()
    network.optimizer.zero_grad()
    x = torch.from_numpy(images)
    for row, module in enumerate(modules):
        start = now()
        x = module(x)
        times[row][0] = now() - start
        x.register_hook(stamp(row))
    start = now()
    loss = network.loss(x, torch.from_numpy(labels))
    times["loss"][0] = now() - start
    backward_start = now()
    loss.backward()
    backward_end = now()
    rows = list(range(len(modules)))
    times["loss"][1] = stamps[rows[-1]] - backward_start
    for row in rows:
        times[row][1] = (stamps[row - 1] if row > 0 else backward_end) - stamps[row]
    start = now()
    network.optimizer.step()
    loss.item()
    end = now()
    times["optimizer"][2] = end - start
    times["step"][2] = end - step_start
    return times


def time_steps(step, network, data, calls, clock="wall"):
    """{row: [forward ms, backward ms, total ms]} averaged over `calls` steps, with the rows'
    totals filled in and "other" (the step less every row) added; `clock` a key of CLOCKS."""
    sums = None
    for _ in range(calls):
        times = step(network, *data, now=CLOCKS[clock])
        sums = times if sums is None else {
            row: [a + b for a, b in zip(sums[row], times[row], strict=True)] for row in sums
        }
    result = {row: [1000 * value / calls for value in values] for row, values in sums.items()}
    for row, values in result.items():
        if row not in ("optimizer", "step"):
            values[2] = values[0] + values[1]
    measured = sum(values[2] for row, values in result.items() if row != "step")
    result["other"] = [0.0, 0.0, result["step"][2] - measured]
    return result


def output_shapes(network, images):
    """(class name, output shape for one image as 'C x H x W') of each module of cnnlab's
    model."""
    from cnnlab import Tensor, no_grad

    shapes, x = [], Tensor(images[:1])
    with no_grad():
        for module in network.model:
            x = module(x)
            shapes.append((type(module).__name__, " x ".join(str(size) for size in x.shape[1:])))
    return shapes


STEPS = {"cnnlab": cnnlab_step, "PyTorch": torch_step}


# ----- worker: one library, driven over a pipe -----------------------------------------------
def layer_worker(library, connection):
    """bench_networks.worker's protocol for this table: ("describe",), ("build", spec,
    weights, images, labels), ("logits",), ("train_step",) as there, and ("memory",) ->
    (bytes, method), ("layers", calls) -> {row: [forward, backward, total] ms}, ("shapes",) ->
    [str], ("backend",) -> str."""
    network_class, network, data = bench.LIBRARIES[library], None, None
    while True:
        command, *arguments = connection.recv()
        if command == "stop":
            return
        if command == "describe":
            reply = network_class.describe()
        elif command == "backend":
            reply = backend_description(library)
        elif command == "build":
            spec, weights, images, labels = arguments
            network, data = network_class(spec, weights), (images, labels)
            reply = None
        elif command == "logits":
            reply = np.asarray(network.infer(data[0]))
        elif command == "train_step":
            reply = network.train_step(*data)
        elif command == "memory":
            reply = step_memory(network.train_step, data)
        elif command == "shapes":
            reply = output_shapes(network, data[0])
        elif command == "layers":
            reply = time_steps(STEPS[library], network, data, *arguments)
        else:
            raise ValueError(f"layer_worker: unknown command {command!r}")
        connection.send(reply)


def backend_description(library):
    if library == "cnnlab":
        return openblas_description()
    import torch

    return (f"PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}, oneDNN "
            f"{'on' if torch.backends.mkldnn.is_available() else 'off'}")  # fmt: skip


# ----- parent --------------------------------------------------------------------------------
def time_layer_rounds(workers, rounds, clock):
    """Per library, {row: [forward, backward, total] ms}, each the median over rounds; the
    libraries alternate and the order swaps every round, as bench_networks.time_rounds."""
    workers.ask_all("layers", 1, clock)  # warm-up, untimed
    seconds = workers.ask("PyTorch", "layers", 1, clock)["step"][2] / 1000
    calls = max(1, round(bench.SECONDS_PER_ROUND / max(seconds, 1e-6)))
    results = {library: [] for library in bench.LIBRARIES}
    order = list(bench.LIBRARIES)
    for _ in range(rounds):
        for library in order:
            results[library].append(workers.ask(library, "layers", calls, clock))
        order.reverse()
    return {
        library: {row: [statistics.median(r[row][k] for r in runs) for k in range(3)]
                  for row in runs[0]}  # fmt: skip
        for library, runs in results.items()
    }


def layer_name(layer):
    """("conv", 3, 32) -> 'conv 3->32'; ("pool",) -> 'pool'."""
    kind, *sizes = layer
    return kind + (" " + "->".join(str(size) for size in sizes) if sizes else "")


def ratio(ours, theirs):
    return f"{theirs / ours:.2f}" if ours > 0 and theirs > 0 else "-"


def layer_table(name, spec, shapes, times, batch_size, clock="wall"):
    """The Markdown lines of one network's table."""
    ours, theirs = times["cnnlab"], times["PyTorch"]
    kind = "CPU time of the process" if clock == "cpu" else "wall-clock time"
    lines = [
        f"{name}, batch {batch_size}, one training step in ms of {kind} (median over rounds); "
        "ratio = PyTorch ms / cnnlab ms (above 1: cnnlab faster)",
        "",
        "| # | layer | output | cnnlab fwd | PyTorch fwd | fwd ratio | cnnlab bwd "
        "| PyTorch bwd | bwd ratio | cnnlab total | PyTorch total | ratio |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = [layer_name(layer) for layer in spec.get("layers", [])]
    if len(labels) != len(shapes):  # a model built otherwise (the vit): its modules' classes
        labels = [name for name, _ in shapes]
    shapes = [shape for _, shape in shapes]
    rows = [(str(i), labels[i], shapes[i], i) for i in range(len(shapes))]
    rows += [("", "loss", "", "loss"), ("", "optimizer", "", "optimizer"),
             ("", "other", "", "other"), ("", "training step", "", "step")]  # fmt: skip
    for index, label, shape, row in rows:
        cells = []
        for k in range(3):
            a, b = ours[row][k], theirs[row][k]
            if k < 2 and row in ("optimizer", "other", "step"):
                cells += ["", "", ""]
            else:
                cells += [f"{a:.2f}", f"{b:.2f}", ratio(a, b)]
        lines.append(f"| {index} | {label} | {shape} | " + " | ".join(cells) + " |")
    return lines


def main(networks, batch_size, rounds, clock="wall"):
    """Print a per-layer table for each network named (keys of bench_networks.NETWORKS), then
    the memory table: batches of `batch_size`, the median of `rounds` rounds, times read from
    CLOCKS[clock]."""
    rng = np.random.default_rng(0)
    load_before = bench.load_average()
    tables, memory, machine = [], [], None
    for name in networks:
        spec = bench.NETWORKS[name]
        if "layers" in spec:
            weights = bench.make_weights(spec["layers"], rng)
        else:
            weights = bench.vit_weights(spec, rng)
        images = rng.standard_normal((batch_size, *spec["input"])).astype(np.float32)
        labels = rng.integers(0, 10, batch_size)
        workers = bench.Workers(target=layer_worker)  # fresh processes: a clean memory baseline
        try:
            workers.ask_all("build", spec, weights, images, labels)
            grown = workers.ask_all("memory")
            bench.check_same_network(workers)
            shapes = workers.ask("cnnlab", "shapes")
            times = time_layer_rounds(workers, rounds, clock)
            if machine is None:
                described, backends = workers.ask_all("describe"), workers.ask_all("backend")
                machine = [cpu_description(), f"NumPy's BLAS: {backends['cnnlab']}",
                           f"{described['cnnlab']}; {described['PyTorch']}; "
                           f"{backends['PyTorch']}"]  # fmt: skip
        finally:
            workers.close()
        tables.append(layer_table(name, spec, shapes, times, batch_size, clock))
        memory.append((name, times, grown))
    load_after = bench.load_average()
    if None not in (load_before, load_after):
        machine.append(f"load average {load_before:.1f} before, {load_after:.1f} after (above "
                       f"{os.cpu_count()}: other processes took turns with these)")  # fmt: skip
    header = [f"Machine: {line}" for line in machine]
    for table in tables:
        print("\n".join([*header, "", *table, ""]))
    print("\n".join([*header, "", "Training step: time and peak memory (resident memory grown "
                     "above the process's level after import and build)", "",
                     "| network | cnnlab ms | PyTorch ms | ratio | cnnlab peak MB "
                     "| PyTorch peak MB | measured by |",
                     "|---|---:|---:|---:|---:|---:|---|"]))  # fmt: skip
    for name, times, grown in memory:
        ours, theirs = times["cnnlab"]["step"][2], times["PyTorch"]["step"][2]
        methods = sorted({grown["cnnlab"][1], grown["PyTorch"][1]})
        print(f"| {name} | {ours:.1f} | {theirs:.1f} | {ratio(ours, theirs)} | "
              f"{grown['cnnlab'][0] / MB:.0f} | {grown['PyTorch'][0] / MB:.0f} | "
              f"{', '.join(methods)} |")  # fmt: skip
