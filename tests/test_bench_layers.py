"""benchmarks/bench_networks.py --layers (benchmarks/layers.py): one table per network whose
rows are the model's layers, in order (the vit's by module class), then loss, optimizer, other
and the whole step; the machine block names the CPU, its vector extensions and NumPy's BLAS;
the memory table has a row per network. No timing is asserted, only that every time is a
number and the ratios agree."""

import importlib
import mmap
import pathlib

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
COLUMNS = ["#", "layer", "output", "cnnlab fwd", "PyTorch fwd", "fwd ratio", "cnnlab bwd",
           "PyTorch bwd", "bwd ratio", "cnnlab total", "PyTorch total", "ratio"]  # fmt: skip


@pytest.fixture
def layers(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the spawned workers import it by name
    module = importlib.import_module("layers")
    monkeypatch.setattr(module.bench, "SECONDS_PER_ROUND", 0.001)  # one call per round
    return module


def cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_the_layer_table_lists_the_models_layers_with_both_libraries_times(layers, capsys):
    bench = importlib.import_module("bench_networks")
    bench.main(["--layers", "--rounds", "1", "--batch-size", "2", "--networks", "cifar-cnn",
                "fmnist-vit"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    headers = [i for i, line in enumerate(lines) if line == "| " + " | ".join(COLUMNS) + " |"]
    tables = []
    for header in headers:
        tables.append([])
        for line in lines[header + 2 :]:
            if not line.startswith("|"):
                break
            tables[-1].append(cells(line))
    assert len(tables) == 2
    rows, vit_rows = tables
    vit = ["Conv2d", "PatchTokens", *["TransformerEncoderLayer"] * 6, "LayerNorm", "SelectToken",
           "Linear"]  # the vit has no layer list: its modules' classes, in order
    assert [row[1] for row in vit_rows] == [*vit, "loss", "optimizer", "other", "training step"]
    assert vit_rows[1][2] == "50 x 64" and float(vit_rows[2][9]) > 0
    spec = bench.NETWORKS["cifar-cnn"]["layers"]
    expected = [layers.layer_name(layer) for layer in spec]
    assert expected[:3] == ["conv 3->32", "relu", "conv 32->32"]
    assert [row[1] for row in rows] == [*expected, "loss", "optimizer", "other", "training step"]
    assert [row[0] for row in rows[: len(spec)]] == [str(i) for i in range(len(spec))]
    assert rows[0][2] == "32 x 32 x 32" and rows[len(spec) - 1][2] == "10"
    for row in rows[: len(spec) + 1]:  # the layers and the loss: forward, backward, total
        for start in (3, 6, 9):
            ours, theirs = float(row[start]), float(row[start + 1])
            assert ours >= 0 and theirs >= 0
            if ours >= 0.01 and row[start + 2] != "-":  # the times are rounded to 0.01
                low = max(theirs - 0.005, 0) / (ours + 0.005)
                high = (theirs + 0.005) / (ours - 0.005)
                assert low - 0.005 <= float(row[start + 2]) <= high + 0.005
        for library in (0, 1):  # total = forward + backward
            total = float(row[3 + library]) + float(row[6 + library])
            assert float(row[9 + library]) == pytest.approx(total, abs=0.011)
    step = rows[-1]
    assert step[3:9] == [""] * 6 and float(step[9]) > 0 and float(step[10]) > 0

    machine = [line for line in lines if line.startswith("Machine: ")]
    assert any("vector extensions present: " in line for line in machine)
    assert any("NumPy's BLAS: " in line and "OpenBLAS" in line for line in machine)
    assert any("cnnlab: " in line and "PyTorch 2.13" in line for line in machine)

    memory_header = next(i for i, line in enumerate(lines) if "cnnlab peak MB" in line)
    memory_rows = [cells(line) for line in lines[memory_header + 2 : memory_header + 4]]
    assert [row[0] for row in memory_rows] == ["cifar-cnn", "fmnist-vit"]
    for row in memory_rows:
        assert float(row[4]) >= 0 and float(row[5]) >= 0 and row[6] in ("VmHWM", "ru_maxrss")


def test_the_cpu_line_says_which_vector_extensions_are_present(layers, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f\n\n"
        "processor\t: 1\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f\n"
    )
    line = layers.cpu_description(str(cpuinfo))
    present, absent = line.split("present: ")[1].split("; absent: ")
    assert line.startswith("Some CPU 9000, ")
    assert present.split() == ["avx2", "fma", "avx512f"]
    assert "amx_tile" in absent.split() and "avx512_bf16" in absent.split()
    assert "unknown" in layers.cpu_description(str(tmp_path / "missing"))


def test_step_memory_sees_what_a_step_holds_at_its_peak(layers):
    held = []

    def step(size):  # fresh pages from the kernel (the heap may hold freed memory to reuse)
        pages = mmap.mmap(-1, size)
        np.frombuffer(pages, np.uint8)[:] = 1  # touched: resident
        held.append(pages)

    grown, method = layers.step_memory(step, (64 << 20,), steps=1)
    assert method in ("VmHWM", "ru_maxrss")
    assert grown >= 60 << 20
    held.pop().close()
