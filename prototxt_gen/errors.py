"""Errors a user can act on. str(error) is the whole message: one line that names the file, key
or layer."""


class PrototxtGenError(Exception):
    """Base class; the CLI prints these as one line and exits with `exit_code`."""

    exit_code = 2  # bad input or usage


class SpecError(PrototxtGenError):
    """A model spec (TOML) is malformed or asks for something that does not exist."""


class NetError(PrototxtGenError):
    """A network definition is inconsistent (unknown field, bad shape, missing blob...)."""


class OutputError(PrototxtGenError):
    """An output file could not be written (exit status 1: the input was fine)."""

    exit_code = 1
