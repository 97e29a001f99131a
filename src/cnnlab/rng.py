"""The library's default random generator, seeded by `cnnlab.manual_seed`.

Everything random in cnnlab (initialisation, dropout, shuffling) takes an explicit
`numpy.random.Generator`; where none is given, it draws from this one. The command line
owns the seed.
"""

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed):
    """Reseed the default generator (like torch.manual_seed) and return it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator():
    """The generator used when a function is given none."""
    return _generator


def get_rng_state():
    """JSON-serialisable state of the default generator (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Restore the default generator from `get_rng_state()`'s value."""
    _generator.bit_generator.state = state
