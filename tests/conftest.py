"""What every test module shares: the path to `helpers`, Hypothesis's settings, the `rng` fixture.

Every run draws the same cases, in CI and locally, whatever ran before: Hypothesis is
derandomised (its examples follow from each test's source, no example database) and each test
takes its own generator from the `rng` fixture instead of sharing one at module level.
"""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# tests/helpers.py is imported as `helpers` by the test modules.
sys.path.insert(0, os.path.dirname(__file__))

# Loaded always (no environment variable picks another): CI and a laptop draw the same cases.
# Tests that need fewer examples for their time say so with their own @settings, which inherit
# the rest of this profile.
settings.register_profile(
    "cnnlab",
    derandomize=True,  # the same examples every run
    database=None,  # nor replays of earlier failures
    max_examples=100,
    deadline=None,  # a busy machine is not a failure
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("cnnlab")

SEED = 20240617


@pytest.fixture
def rng():
    """A new generator for each test, seeded the same every run: a test's data does not depend on
    which tests ran before it (in this process, or on this pytest-xdist worker)."""
    return np.random.default_rng(SEED)
