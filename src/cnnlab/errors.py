"""Exceptions users catch. Both are ValueErrors, so `except ValueError` catches them too."""


class DatasetError(ValueError):
    """A dataset file is missing, truncated, damaged or not in the expected format.

    The message names the file and says what was expected and what was found.
    """


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match the model."""
