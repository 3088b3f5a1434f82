"""What the importers share: taking a source's tensors for a net's blobs, checking each shape,
and refusing -- in one line -- a source whose tensors are not the net's."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import NetError


def _dims(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape)) or "a scalar"


class Matcher:
    """Tensors taken by name: `take(name, want, read, shape)` returns the array (None, noted,
    when it is missing or does not fit `want`); `refuse_if_wrong` raises for all of them."""

    def __init__(self, available: Iterable[str]):
        self.available = set(available)
        self.used: set[str] = set()
        self.lacking: list[str] = []
        self.wrong: list[str] = []

    def take(self, name: str, want: Sequence[int], read: Callable[[str], np.ndarray],
             shape: Callable[[str], Sequence[int]],
             fit: Callable[[Sequence[int]], Sequence[int] | None] | None = None):
        """The tensor `name` if it holds the values of a blob of shape `want`: as many values
        and, with `fit` (its shape in the net's layout, None if it cannot be), that shape."""
        if name not in self.available:
            self.lacking.append(name)
            return None
        self.used.add(name)
        have = tuple(shape(name))
        laid = fit(have) if fit else want
        if laid is None or tuple(laid) != tuple(want) or math.prod(have) != math.prod(want):
            self.wrong.append(f"'{name}' is {_dims(have)}, the net needs {_dims(want)}")
            return None
        arr = read(name)
        if arr.dtype.kind != "f":
            self.wrong.append(f"'{name}' holds {arr.dtype} values, not floats")
            return None
        return arr

    def refuse_if_wrong(self, what: str, unused: Sequence[str], kind: str = "tensor") -> None:
        lacking, wrong = self.lacking, self.wrong
        problems = ([f"lacks {', '.join(map(repr, lacking[:3]))}"
                     + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")]
                    if lacking else []) + wrong[:2]
        if unused:
            problems.append(f"has {len(unused)} {kind}(s) the net does not use ("
                            + ", ".join(map(repr, unused[:3]))
                            + (", ..." if len(unused) > 3 else "") + ")")
        if problems:
            raise NetError(f"{what}: " + "; ".join(problems))
