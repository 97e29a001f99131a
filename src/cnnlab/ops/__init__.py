"""Differentiable primitives: forward/backward pairs on plain ndarrays, one file per family."""
