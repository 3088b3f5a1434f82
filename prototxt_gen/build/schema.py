"""Checking TOML tables against declared keys, with one-line errors that name the key path.

A table's schema is a dict of key name -> Key. Each Key knows how to check a value and what
it expected, so an error reads `my.toml: stage[1].units: expected a positive integer, got "3"`.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import SpecError, one_line

REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """A key of a spec table: a checker returning the value (or None when it does not fit), the
    phrase naming what it expects, a default (REQUIRED when there is none) and a short doc."""

    check: Callable[[Any], Any]
    expected: str
    default: Any = REQUIRED
    doc: str = ""


# The largest integer a spec may give: Caffe's int32 fields (axis, pad...) hold no more, and
# its uint32 ones (num_output, kernel_size) no sensible net comes near.
INT_MAX = 2**31 - 1


def _int(v: Any, low: int) -> Any:
    return v if isinstance(v, int) and not isinstance(v, bool) and low <= v <= INT_MAX else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e300 \
        and math.isfinite(v)


def positive_int(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: _int(v, 1), "a positive integer", default, doc)


def non_negative_int(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: _int(v, 0), "an integer >= 0", default, doc)


def positive_float(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: float(v) if _finite(v) and v > 0 else None, "a positive number",
               default, doc)


def boolean(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: v if isinstance(v, bool) else None, "true or false", default, doc)


def string(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: v if isinstance(v, str) and v else None, "a non-empty string",
               default, doc)


def choice(*options: str, default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: v if isinstance(v, str) and v in options else None,
               "one of " + ", ".join(f'"{o}"' for o in options), default, doc)


def shape(default: Any = REQUIRED, doc: str = "") -> Key:
    def check(v: Any) -> Any:
        if isinstance(v, list) and v and all(_int(d, 1) is not None for d in v):
            return tuple(v)
        return None
    return Key(check, "a list of positive integers, e.g. [1, 3, 224, 224]", default, doc)


def numbers(default: Any = REQUIRED, doc: str = "") -> Key:
    def check(v: Any) -> Any:
        if isinstance(v, list) and v and all(_finite(x) for x in v):
            return [float(x) for x in v]
        return None
    return Key(check, "a list of numbers, e.g. [104, 117, 123]", default, doc)


def number(default: Any = REQUIRED, doc: str = "") -> Key:
    return Key(lambda v: float(v) if _finite(v) and v >= 0 else None, "a number >= 0",
               default, doc)


def int_or(*words: str, default: Any = REQUIRED, doc: str = "") -> Key:
    quoted = " or ".join(f'"{w}"' for w in words)
    return Key(lambda v: v if (isinstance(v, str) and v in words) or _int(v, 1) is not None
               else None, f"a positive integer or {quoted}", default, doc)


def show(value: Any, limit: int = 200) -> str:
    """A value as the user wrote it in TOML, cut to about `limit` characters."""
    text = _show(value, 0)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _show(value: Any, depth: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + one_line(value, 200) + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        if depth >= 3:
            return "[...]"
        return "[" + ", ".join(_show(v, depth + 1) for v in value[:10]) \
            + (", ..." if len(value) > 10 else "") + "]"
    return one_line(str(value), 200)


def check_table(table: Any, keys: dict[str, Key], source: str, path: str,
                ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate a TOML table: every key known, every required key present, every value of the
    right kind. Returns the values with defaults filled in (keys in `ignore` are skipped)."""
    if not isinstance(table, dict):
        raise SpecError(f"{source}: {path}: expected a table, got {show(table)}")
    for name in table:
        if name not in keys and name not in ignore:
            close = difflib.get_close_matches(name, list(keys), n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                "known keys: " + ", ".join(sorted(keys))
            raise SpecError(f"{source}: {join(path, name)}: unknown key ({hint})")
    values = {}
    for name, key in keys.items():
        if name not in table:
            if key.default is REQUIRED:
                raise SpecError(f"{source}: {path or 'top level'}: missing required key '{name}' "
                                f"({key.expected})")
            values[name] = key.default
            continue
        checked = key.check(table[name])
        if checked is None:
            big = [v for v in (table[name] if isinstance(table[name], list) else [table[name]])
                   if isinstance(v, int) and abs(v) > INT_MAX]
            limit = f" (at most {INT_MAX}, what Caffe's fields hold)" if big else ""
            raise SpecError(f"{source}: {join(path, name)}: expected {key.expected}{limit}, "
                            f"got {show(table[name])}")
        values[name] = checked
    return values


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
