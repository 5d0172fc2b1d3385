"""Exceptions that carry a message for the user; the CLI prints them on one line, without a traceback."""


class Codec2VecError(Exception):
    """Base class: an expected failure with an actionable message."""


class StoreError(Codec2VecError):
    """A token store is missing, damaged or inconsistent (the message names the file)."""


class AudioError(Codec2VecError):
    """An audio input cannot be used (the message names the file and the reason)."""


class ConfigError(Codec2VecError):
    """A configuration is invalid (the message names the key)."""
