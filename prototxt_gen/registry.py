"""The one rule every registry follows (shape rules, converters, block kinds): a second
registration for the same name is an error unless it asks to replace the first, so that a
fork's plugin cannot silently change what a built-in layer means."""
from __future__ import annotations

from typing import Any, Iterable


def put(table: dict[str, Any], names: Iterable[str], value: Any, what: str,
        replace: bool = False) -> None:
    names = list(names)
    taken = [n for n in names if n in table] if not replace else []
    if taken:
        raise ValueError(f"{what} for {', '.join(map(repr, taken))} is already registered "
                         "(pass replace=True to replace it)")
    for n in names:
        table[n] = value
