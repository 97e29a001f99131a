"""benchmarks/bench_networks.py runs end to end: both libraries build the same network from the
same weights (it checks their logits and first loss agree) and it prints the table."""

import importlib
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_network_benchmark_prints_its_table(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the spawned workers import it by name
    bench = importlib.import_module("bench_networks")
    monkeypatch.setattr(bench, "SECONDS_PER_ROUND", 0.01)
    bench.main(["--rounds", "1", "--batch-size", "4"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ") and "images/s" not in line]
    rows = [line.split(" | ") for line in lines]
    assert [(row[0], row[1]) for row in rows] == [
        ("| fmnist-cnn", "training step"), ("| fmnist-cnn", "inference"),
        ("| cifar-cnn", "training step"), ("| cifar-cnn", "inference"),
        ("| fmnist-vit", "training step"), ("| fmnist-vit", "inference"),
    ]
    for row in rows:
        ours, theirs, ratio = (float(cell.strip(" |").replace(",", "")) for cell in row[2:])
        assert ours > 0 and theirs > 0  # printed rounded to whole images/s, the ratio to 0.01:
        low, high = (ours - 0.5) / (theirs + 0.5), (ours + 0.5) / (theirs - 0.5)
        assert low - 0.005 <= ratio <= high + 0.005
    assert "cnnlab: " in out and "PyTorch 2.13" in out
