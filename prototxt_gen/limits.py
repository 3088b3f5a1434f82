"""Limits on what an input may make prototxt-gen spend, checked before anything is allocated.

A 200-byte prototxt can declare a 10-billion-value layer, and a spec can ask for a billion
residual units. Memory that the input files themselves hold (a .caffemodel's weights) is not
limited: its size is the user's own. What is limited is what a command would make from
nothing: placeholder or initial weights, example inputs and activations, and generated layers.

    PROTOTXT_GEN_MAX_MEMORY   bytes a command may allocate beyond its inputs (default 1G;
                              K, M, G, T suffixes; "unlimited")
    PROTOTXT_GEN_MAX_LAYERS   layers a spec may generate (default 50000; "unlimited")
"""
from __future__ import annotations

import os
import re

from .errors import LimitError

MEMORY_VARIABLE = "PROTOTXT_GEN_MAX_MEMORY"
LAYERS_VARIABLE = "PROTOTXT_GEN_MAX_LAYERS"
DEFAULT_MEMORY = 2**30
DEFAULT_LAYERS = 50_000
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _read(variable: str, default: int, units: bool) -> int | None:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    if text.lower() in ("unlimited", "none", "inf"):
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE) if units \
        else re.fullmatch(r"(\d+)()", text)
    if not m:
        raise LimitError(f"{variable}={text!r}: expected "
                         + ("a size such as 4G or 512M" if units else "a whole number")
                         + ", or 'unlimited'")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def max_memory() -> int | None:
    """Bytes a command may allocate beyond what its input files hold (None: no limit)."""
    return _read(MEMORY_VARIABLE, DEFAULT_MEMORY, units=True)


def max_layers() -> int | None:
    """Layers a spec may generate (None: no limit)."""
    return _read(LAYERS_VARIABLE, DEFAULT_LAYERS, units=False)


def check_memory(nbytes: int, what: str) -> None:
    """LimitError when `what` would need more than the memory limit."""
    limit = max_memory()
    if limit is not None and nbytes > limit:
        raise LimitError(f"{what} would need {format_bytes(nbytes)}, over the "
                         f"{format_bytes(limit)} limit for memory the input files do not hold "
                         f"(set {MEMORY_VARIABLE}, e.g. {MEMORY_VARIABLE}="
                         f"{_suggest(nbytes)}, to allow it)")


def check_layers(count: int) -> None:
    limit = max_layers()
    if limit is not None and count > limit:
        raise LimitError(f"more than {limit} layers generated (set {LAYERS_VARIABLE} to allow "
                         "more)")


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _suggest(nbytes: int) -> str:
    gib = -(-nbytes // 2**30)
    return f"{gib}G" if gib < 1024 else "unlimited"
