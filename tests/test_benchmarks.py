"""benchmarks/bench_networks.py runs end to end: both libraries build the same network from the
same weights (it checks their logits and first loss agree) and it prints the table.

The timings themselves are the benchmark's business: this test checks the table's structure and
that each row's numbers agree with each other up to the table's own rounding, whatever the load
of the machine.
"""

import importlib
import pathlib
import re

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
ROW = re.compile(r"\| (\S+) \| (training step|inference) \| ([\d,]+) \| ([\d,]+) \| (\d+\.\d\d) \|")


def ratio_bounds(ours, theirs):
    """The range the printed ratio may take, given the printed rates.

    The benchmark prints each rate rounded to a whole number (so the measured rate is within
    0.5 of it) and the ratio of the unrounded rates to two decimals (within 0.005 of it): the
    printed ratio lies within [(ours - 0.5) / (theirs + 0.5), (ours + 0.5) / (theirs - 0.5)],
    widened by 0.005. (7.64 from rates printed 66 and 9 is such a case: 66.4 / 8.69.)
    """
    slack = 0.005 + 1e-9  # two decimals, and the float formatting of exact halves
    low = (ours - 0.5) / (theirs + 0.5) - slack
    high = (ours + 0.5) / (theirs - 0.5) + slack if theirs > 0.5 else float("inf")
    return low, high


def test_ratio_bounds_follow_the_rounding():
    low, high = ratio_bounds(66, 9)
    assert low < 66 / 9 < high and low < 7.64 < high  # the row that once failed a 1% tolerance
    assert not low < 66.6 / 8.4 < high  # a rate that would print as 67 or a ratio off by more
    low, high = ratio_bounds(1000, 1000)  # large rates: little more than the two decimals
    assert 0.01 < high - low < 0.014


def test_the_network_benchmark_prints_its_table(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the spawned workers import it by name
    bench = importlib.import_module("bench_networks")
    monkeypatch.setattr(bench, "SECONDS_PER_ROUND", 0.01)
    bench.main(["--rounds", "1", "--batch-size", "4"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = "| network | task | cnnlab images/s | PyTorch images/s | cnnlab / PyTorch |"
    assert header in lines and lines.index(header) >= 2  # after the machine line and a blank
    body = lines[lines.index(header) + 2 :]
    rows = [ROW.fullmatch(line) for line in body]
    assert all(rows), body
    assert [row.group(1, 2) for row in rows] == [
        ("fmnist-cnn", "training step"), ("fmnist-cnn", "inference"),
        ("cifar-cnn", "training step"), ("cifar-cnn", "inference"),
        ("fmnist-vit", "training step"), ("fmnist-vit", "inference"),
    ]
    for row in rows:
        ours, theirs = (int(row.group(k).replace(",", "")) for k in (3, 4))
        low, high = ratio_bounds(ours, theirs)
        assert low <= float(row.group(5)) <= high, row.group(0)
    assert lines[0].startswith("Batch size 4; ")
    assert "cnnlab: " in lines[0] and "PyTorch 2.13" in lines[0]
