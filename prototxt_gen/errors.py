"""Errors a user can act on. str(error) is the whole message: one line that names the file, key
or layer."""


import re

# Characters that would break a message across lines or hide text on a terminal: C0/C1
# controls, the Unicode line and paragraph separators, bidirectional overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def escape_controls(text: str) -> str:
    """`text` with control and separator characters (and lone surrogates) as visible escapes:
    one line, nothing hidden, every other character kept."""
    text = _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_LONG_WORD = re.compile(r"\S{241,}")


def one_line(text: str, limit: int = 2000) -> str:
    """`text` safe to print as one line: control and separator characters as escapes
    (a newline as \\n), any run of over 240 non-space characters (a huge name or value)
    shortened, and the whole cut to about `limit` characters, keeping its start and end
    (the file and the reason)."""
    text = escape_controls(text.strip())
    text = _LONG_WORD.sub(lambda m: f"{m.group()[:160]}...({len(m.group()) - 200} more)..."
                          f"{m.group()[-40:]}", text)
    if len(text) <= limit:
        return text
    return text[:limit // 2] + " ... " + text[-(limit // 2 - 5):]


def shown(value, limit: int = 200) -> str:
    """A user's value quoted for a message: repr-like, at most `limit` characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    text = one_line(text, 10**9)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class PrototxtGenError(Exception):
    """Base class; the CLI prints these as one line and exits with `exit_code`."""

    exit_code = 2  # bad input or usage


class SpecError(PrototxtGenError):
    """A model spec (TOML) is malformed or asks for something that does not exist."""


class NetError(PrototxtGenError):
    """A network definition is inconsistent (unknown field, bad shape, missing blob...)."""


class LimitError(PrototxtGenError):
    """The input asks for more memory, layers or nesting than the limits allow (exit 2); the
    message says which variable raises the limit."""


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


class Unsupported(Exception):
    """Raised by a lowering for a layer (or a use of it) a back end cannot translate; the back
    end reports every such layer in one error."""
