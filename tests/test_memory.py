"""Memory of a training step must not grow with the number of steps: the graph and the arrays
it saved are released by backward."""

import gc
import tracemalloc

import numpy as np

import cnnlab
import cnnlab.nn.functional as F


def test_fifty_training_steps_do_not_keep_growing_memory():
    rng = np.random.default_rng(0)
    params = [
        cnnlab.Tensor(rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.3, True),
        cnnlab.Tensor(np.zeros(8, np.float32), True),
        cnnlab.Tensor(rng.standard_normal((10, 8 * 7 * 7)).astype(np.float32) * 0.05, True),
        cnnlab.Tensor(np.zeros(10, np.float32), True),
    ]
    x = rng.random((32, 1, 14, 14), dtype=np.float32)
    y = rng.integers(0, 10, 32)

    def step():
        hidden = F.max_pool2d(F.relu(F.conv2d(x, params[0], params[1], padding=1)), 2)
        loss = F.cross_entropy(F.linear(hidden.flatten(1), params[2], params[3]), y)
        loss.backward()
        for p in params:
            p.data -= 0.01 * p.grad
            p.grad = None
        return loss.item()

    tracemalloc.start()
    try:
        for _ in range(10):
            step()
        gc.collect()
        after_warmup = tracemalloc.get_traced_memory()[0]
        losses = [step() for _ in range(50)]
        gc.collect()
        after_fifty = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    one_step_activations = 32 * 8 * 14 * 14 * 4
    assert after_fifty - after_warmup < one_step_activations, (after_warmup, after_fifty)
    assert losses[-1] < losses[0]  # the steps really trained something
