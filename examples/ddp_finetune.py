"""Fine-tune a cnnlab run in PyTorch on several processes, then evaluate it with cnnlab again.

    python examples/ddp_finetune.py runs/cnn-fashion-mnist --out runs/cnn-ddp --steps 200
    cnnlab evaluate runs/cnn-ddp

cnnlab trains on one machine. When a model or a dataset outgrows it, the way on is PyTorch's
distributed training, not a home-made one; this script is that road, walked on one machine:

1. the run's model becomes a torch.nn.Module (`cnnlab.interop.to_torch`, same weights, same
   state-dict keys), and the run's training images are normalised as cnnlab normalised them;
2. `--processes` workers start (torch.multiprocessing.spawn) and join a gloo process group on
   127.0.0.1; each wraps its copy of the module in DistributedDataParallel and trains on its
   own shard of the images (DistributedSampler), the gradients averaged over all workers at
   every step, so every copy takes the same steps;
3. worker 0 brings the weights back (`cnnlab.interop.from_torch`) and saves them with the
   run's metadata as OUT/model (`cnnlab.checkpoint.save_model`): `cnnlab evaluate OUT` and
   `cnnlab predict OUT ...` read it like any run.

On several machines the workers are the same; torchrun starts them and sets the rendezvous
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) instead of this script. BatchNorm's running
statistics are worker 0's (DistributedDataParallel broadcasts its buffers at each step).
Needs PyTorch (pip install torch); runs on CPUs.
"""

import argparse
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from cnnlab.checkpoint import save_model
from cnnlab.data import load_dataset
from cnnlab.interop import from_torch, read_run, to_torch
from cnnlab.interop.onnx_graph import pixel_preprocessing


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the cnnlab run directory (or RUN_DIR/best)")
    parser.add_argument("--out", type=Path, required=True, help="the new run directory")
    parser.add_argument("--processes", type=int, default=2, help="workers (default: 2)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps (default: 200)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per worker and step (default: 32)")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam's step size (default: 1e-4)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use the first N training images (default: all)")
    parser.add_argument("--data-dir", default=None, help="where the dataset is (as cnnlab train)")
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default: 0)")
    return parser.parse_args(argv)


def training_images(metadata, data_dir, limit):
    """(x (N, C, H, W) float32 normalised as cnnlab's training did, y (N,) int64)."""
    preprocessing = pixel_preprocessing(metadata)  # a run on hand-made features is refused
    train, _ = load_dataset(metadata["dataset"], data_dir=data_dir)
    pixels, labels = train.images[:limit], train.labels[:limit]
    mean = np.asarray(preprocessing["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(preprocessing["std"], np.float32).reshape(-1, 1, 1)
    return (pixels.astype(np.float32) / np.float32(255) - mean) / std, labels


def loss_function(metadata, num_classes):
    """The run's loss in PyTorch: cross-entropy, or the multiclass hinge (torch's
    MultiMarginLoss is cnnlab's hinge divided by the number of classes)."""
    if metadata.get("loss") == "hinge":
        margin = metadata.get("training", {}).get("margin", 1.0)
        hinge = torch.nn.MultiMarginLoss(margin=margin)
        return lambda scores, target: hinge(scores, target) * num_classes
    return torch.nn.CrossEntropyLoss()


def worker(rank, world_size, port, arguments):
    """One training process: join the group, train its shard, rank 0 saves the result."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        model, metadata, _ = read_run(arguments.run)
        x, y = training_images(metadata, arguments.data_dir, arguments.limit)
        images = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        sampler = DistributedSampler(images, world_size, rank, shuffle=True, seed=arguments.seed)
        loader = DataLoader(images, batch_size=arguments.batch_size, sampler=sampler,
                            drop_last=True)
        module = to_torch(model).train()
        parallel = DistributedDataParallel(module)
        optimizer = torch.optim.Adam(parallel.parameters(), lr=arguments.lr)
        loss = loss_function(metadata, len(metadata["classes"]))
        step, epoch = 0, 0
        while step < arguments.steps:
            sampler.set_epoch(epoch)  # a new shuffle, the same on every worker
            for batch, target in loader:
                optimizer.zero_grad()
                value = loss(parallel(batch), target)
                value.backward()  # DistributedDataParallel averages the gradients here
                optimizer.step()
                step += 1
                if rank == 0 and (step % 50 == 0 or step == arguments.steps):
                    print(f"step {step}/{arguments.steps}: loss {value.item():.4f}", flush=True)
                if step == arguments.steps:
                    break
            epoch += 1
        difference = replica_difference(module)
        if rank == 0:
            print(f"replicas agree: max |weight difference| between workers {difference:.3g}")
            fine_tuned = from_torch(module.eval())  # the cnnlab model, its recipe restored
            metadata = {**metadata, "metrics": {}, "fine_tuned": {
                "from": str(arguments.run), "steps": step, "processes": world_size,
                "batch_size": arguments.batch_size, "lr": arguments.lr,
                "images": len(images), "with": f"torch {torch.__version__} "
                                                "DistributedDataParallel (gloo)"}}
            save_model(arguments.out / "model", fine_tuned, metadata)
            print(f"saved {arguments.out / 'model'}: cnnlab evaluate {arguments.out}")
    finally:
        dist.destroy_process_group()


def replica_difference(module) -> float:
    """max |w - w_rank0| over every weight and worker (0 when DDP kept the copies together)."""
    weights = torch.cat([parameter.detach().flatten() for parameter in module.parameters()])
    reference = weights.clone()
    dist.broadcast(reference, src=0)
    difference = (weights - reference).abs().max()
    dist.all_reduce(difference, op=dist.ReduceOp.MAX)
    return difference.item()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None):
    arguments = parse_arguments(argv)
    if arguments.processes < 1 or arguments.steps < 1:
        sys.exit("error: --processes and --steps must be at least 1")
    try:  # the checks every worker would fail, once, before starting them
        _, metadata, _ = read_run(arguments.run)
        pixel_preprocessing(metadata, source=str(arguments.run))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    torch.multiprocessing.spawn(worker, args=(arguments.processes, free_port(), arguments),
                                nprocs=arguments.processes, join=True)


if __name__ == "__main__":
    main()
