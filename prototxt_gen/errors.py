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


def untranslatable(target: str, register: str, missing: list, problems: list[str]) -> NetError:
    """One error for every layer a back end cannot translate, found before anything is built:
    `missing` are layers of types with no converter (named with the decorator that registers
    one), `problems` describe layers whose converter refused their configuration."""
    parts = []
    if missing:
        types = sorted({layer.type for layer in missing})
        parts.append(f"{len(missing)} layer(s) have no {target} implementation: "
                     + ", ".join(f"'{layer.name}' ({layer.type})" for layer in missing[:10])
                     + (" ..." if len(missing) > 10 else "")
                     + f" (register one with @{register}({', '.join(map(repr, types))}))")
    if problems:
        parts.append(f"{len(problems)} layer(s) cannot be translated: " + "; ".join(problems))
    return NetError(f"cannot convert to {target}: " + "; ".join(parts))
