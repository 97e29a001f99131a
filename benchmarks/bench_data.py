"""Data-layer speed and memory: loading a whole dataset, and loader throughput.

    python benchmarks/bench_data.py [--dataset fashion-mnist] [--data-dir DIR]

Prints the load time, the peak resident memory the load added (ru_maxrss, measured in this
fresh process before anything else is allocated) against the raw uint8 size, and the images/s
of one shuffled, normalised, augmented epoch in batches of 128.
"""

import argparse
import resource
import time

from cnnlab.data import (
    Compose,
    DataLoader,
    RandomCrop,
    RandomHorizontalFlip,
    RandomTranslate,
    channel_stats,
    load_dataset,
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    before = peak_rss_mib()
    start = time.perf_counter()
    train, test = load_dataset(args.dataset, data_dir=args.data_dir)
    load_seconds = time.perf_counter() - start
    added = peak_rss_mib() - before
    raw = (train.images.nbytes + test.images.nbytes + train.labels.size + test.labels.size) / 2**20
    print(f"{args.dataset}: train {train.images.shape}, test {test.images.shape}")
    print(f"load: {load_seconds:.2f} s; peak RSS added {added:.0f} MiB for {raw:.0f} MiB raw "
          f"({added / raw:.2f}x)")

    start = time.perf_counter()
    mean, std = channel_stats(train)
    print(f"channel_stats: {time.perf_counter() - start:.2f} s, mean {mean}, std {std}")

    augment = Compose([RandomCrop(padding=2), RandomHorizontalFlip(), RandomTranslate(2)])
    for name, aug in (("plain", None), ("augmented", augment)):
        loader = DataLoader(train, args.batch_size, shuffle=True, seed=0, mean=mean, std=std,
                            augment=aug)
        start = time.perf_counter()
        count = sum(len(y) for _, y in loader)
        seconds = time.perf_counter() - start
        print(f"loader ({name}, batch {args.batch_size}): {count / seconds:,.0f} images/s")


if __name__ == "__main__":
    main()
