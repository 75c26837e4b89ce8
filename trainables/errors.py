"""Exceptions a user can act on; the CLIs turn them into one line and a non-zero exit."""


class OptistudyError(Exception):
    """Base class for errors caused by the user's input rather than by a bug."""


class ConfigError(OptistudyError, ValueError):
    """A configuration value is unknown, missing or out of range."""


class DataError(OptistudyError, ValueError):
    """A data file is missing, unreadable, empty or lacks labels."""


class FoundationError(OptistudyError, ValueError):
    """A foundation model cannot be loaded or does not cover the target's elements."""
