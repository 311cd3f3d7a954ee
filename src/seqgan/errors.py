"""Errors that the CLI turns into one clear line and exit code 2."""


class SeqGANError(Exception):
    """Bad input or usage: a user can fix it. The CLI prints the message alone and exits 2."""


class ConfigError(SeqGANError):
    """A config file, preset or override is invalid; the message names the key."""


class DataError(SeqGANError):
    """A corpus file is missing, empty, undecodable or malformed."""


class CheckpointError(SeqGANError):
    """A checkpoint is missing, corrupt, or does not fit the run."""
