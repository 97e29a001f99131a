"""The lab's three speeds: how soon the page is usable, how long one input's predictions and
every layer's activation maps take for the default CNN, and how soon a training point reaches
an open page.

    python benchmarks/bench_lab.py [--repeats 20]

It trains a small default CNN (Fashion-MNIST, 500 images, 1 epoch) into a temporary runs
folder, serves the lab over it (`cnnlab lab --port 0`, a subprocess), and measures:
  usable     the page's "cnnlab-ready" mark (the run list drawn), from navigation start, in
             Chromium (/usr/bin/chromium), median over fresh page loads;
  inspect    POST /api/runs/cnn/inspect for a test image (predictions and every layer's maps),
             unshifted and shifted by (2, 2) (adds each layer's equivariance error), median;
  points     for a second run trained by `cnnlab train` while the page watches it, the time
             from a point's writing (its "time") to the page drawing it, median and maximum.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lab_helpers import start_lab, stop_lab, train_run  # noqa: E402

NEWER_POINT = """(old) => {
    const newest = document.querySelector("#loss-chart").dataset.newest;
    return newest && newest !== old && [newest, Date.now() / 1000 - Number(newest)];
}"""


def median_ms(seconds):
    return 1000 * statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    runs_dir = Path(tempfile.mkdtemp()) / "runs"
    train_run(runs_dir, "cnn")
    process, url = start_lab(runs_dir)
    try:
        inspect = {}
        with httpx.Client(base_url=url, timeout=60) as client:
            for shift in ((0, 0), (2, 2)):
                params = {"test_index": 0, "dy": shift[0], "dx": shift[1]}
                client.post("/api/runs/cnn/inspect", params=params)  # loads model and data
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    client.post("/api/runs/cnn/inspect", params=params).raise_for_status()
                    times.append(time.perf_counter() - start)
                inspect[shift] = median_ms(times)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            usable = []
            for _ in range(5):
                page = browser.new_page()
                page.goto(url)
                page.wait_for_selector("body[data-ready]")
                usable.append(page.evaluate(
                    "performance.getEntriesByName('cnnlab-ready')[0].startTime") / 1000)
                page.close()
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("body[data-ready]")
            training = subprocess.Popen(
                [sys.executable, "-m", "cnnlab", "train", "--model", "cnn", "--epochs", "2",
                 "--limit-train", "3000", "--val-size", "1000", "--quiet", "--out",
                 str(runs_dir / "live")], stdout=subprocess.DEVNULL)
            page.click("#runs-table tr[data-name='live']", timeout=120_000)
            newest = page.wait_for_function(NEWER_POINT, arg=None, timeout=120_000).json_value()[0]
            latencies = []  # from the next point on: the first may be older than the click
            while training.poll() is None and len(latencies) < args.repeats:
                try:
                    newest, latency = page.wait_for_function(
                        NEWER_POINT, arg=newest, polling="raf", timeout=30_000).json_value()
                except Exception:  # the run ended before another point
                    break
                latencies.append(latency)
            training.wait()
            browser.close()
    finally:
        stop_lab(process)
    print(f"page usable:            {median_ms(usable):6.0f} ms (median of {len(usable)} loads)")
    print(f"inspect, default CNN:   {inspect[(0, 0)]:6.1f} ms (predictions + every layer's maps)")
    print(f"  shifted by (2, 2):    {inspect[(2, 2)]:6.1f} ms (+ each layer's equivariance error)")
    if latencies:
        print(f"point to page:          {median_ms(latencies):6.0f} ms median, "
              f"{1000 * max(latencies):.0f} ms at most ({len(latencies)} points)")


if __name__ == "__main__":
    main()
