"""Cross-checks between back ends: an exported model run by its runtime against the PyTorch
translation of the same net, on the same random input.

This module uses two back ends at once, so it is not one of them: nothing in the back ends
imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import PrototxtGenError, one_line
from .net import Net, net_inputs


class VerificationError(PrototxtGenError):
    """An exported model computes something other than the reference (exit status 1)."""

    exit_code = 1


@dataclass
class Agreement:
    output: str
    max_error: float
    bound: float

    def __str__(self) -> str:
        return f"'{self.output}' max|Δ| {self.max_error:.2g} (bound {self.bound:.2g})"


def tolerance(ref: np.ndarray) -> float:
    """1e-4 · max(1, max|ref|): float32 rounding over a deep net, relative to its scale."""
    return 1e-4 * max(1.0, float(np.abs(ref).max()) if ref.size else 0.0)


def random_inputs(net: Net, seed: int = 0, batch: int | None = None) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _, shape in net_inputs(net):
        shape = ((batch,) + tuple(shape[1:])) if batch and len(shape) >= 2 else tuple(shape)
        out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def verify_onnx(net: Net, model: bytes | str, *, fuse: bool = False, seed: int = 0,
                batch: int | None = None) -> list[Agreement]:
    """Run the ONNX model (serialized bytes, or a file path) with onnxruntime on the CPU and
    the PyTorch translation of `net` -- holding the weights the model was built with -- on the
    same random input; raise VerificationError where an output differs by more than
    `tolerance`. Returns each output's agreement."""
    import onnxruntime as ort
    import torch

    from .limits import check_memory
    from .pytorch import to_torch
    from .shapes import activation_bytes, infer
    scale = (batch or 1) / max(1, min((s[0] for _, s in net_inputs(net) if s), default=1))
    # Both runtimes hold the weights and run every layer on the same input.
    check_memory(int(2 * scale * activation_bytes(infer(net))),
                 "--verify (running the model in onnxruntime and PyTorch)")
    options = ort.SessionOptions()
    options.log_severity_level = 4  # its failures are reported as our one-line error
    xs = random_inputs(net, seed, batch)
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        got = session.run(None, dict(zip(names, xs)))
    except Exception as exc:  # onnxruntime's own exception types, one per failure kind
        raise VerificationError(f"--verify: onnxruntime cannot run the model: "
                                f"{one_line(str(exc), 300)}") from None
    module = to_torch(net, fuse=fuse)
    try:
        with torch.no_grad():
            ref = module(*map(torch.from_numpy, xs))
    except RuntimeError as exc:
        raise VerificationError(f"--verify: the PyTorch translation cannot run the model: "
                                f"{one_line(str(exc), 300)}") from None
    refs = [ref] if isinstance(ref, torch.Tensor) else list(ref)
    return compare([o.name for o in session.get_outputs()], got,
                   [r.detach().numpy() for r in refs], "onnxruntime", "the PyTorch translation")


def compare(names: Sequence[str], got: Sequence[np.ndarray], refs: Sequence[np.ndarray],
            what: str, against: str) -> list[Agreement]:
    if len(got) != len(refs):
        raise VerificationError(f"{what} gives {len(got)} output(s), {against} {len(refs)}")
    report = []
    for name, g, r in zip(names, got, refs):
        if g.shape != r.shape:
            raise VerificationError(f"{what}: output '{name}' has shape {g.shape}, {against} "
                                    f"{r.shape}")
        err = float(np.abs(g.astype(np.float64) - r).max()) if r.size else 0.0
        agreement = Agreement(name, err, tolerance(r))
        if not err <= agreement.bound:  # NaN fails too
            raise VerificationError(f"{what} departs from {against}: {agreement}")
        report.append(agreement)
    return report
