import os
import subprocess
import sys
from pathlib import Path

# Under pytest-xdist every core runs a worker: one thread each for torch and the BLAS (read when
# they load, so before any test imports them) rather than each worker oversubscribing the
# machine (measured, 2 cores: 265 s against 288 s).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The team's reference data sits beside the repository (shared/ next to the clone), in CI too.
REFERENCE = Path(os.environ.get("PROTOTXT_GEN_REFERENCE", ROOT.parent / "shared" / "reference"))
KAIMING = REFERENCE / "kaiming"
ZOO = REFERENCE / "zoo"
DATA = Path(__file__).resolve().parent / "data"


def pytest_sessionstart(session):
    if not (KAIMING / "ResNet-50-deploy.prototxt").is_file():
        raise pytest.UsageError(f"reference data not found at {REFERENCE} "
                                "(set PROTOTXT_GEN_REFERENCE)")


def run_cli(*args, cwd=None, env=None):
    """Run `python -m prototxt_gen ARGS` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "prototxt_gen", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def assert_last_error(result, message, code=2):
    """The CLI failed with exit `code`, its last stderr line this error (notes may precede it:
    a fork file's warnings)."""
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"prototxt-gen: error: {message}"


def assert_info_refuses(tmp_path, text, message):
    """`info` on a prototxt of `text` fails with exit 2, its last error line `{path}: message`."""
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    assert_last_error(run_cli("info", path), f"{path}: {message}")


def assert_error(result, message, code=2):
    """The CLI failed as it promises: exit `code`, nothing on stdout, one line on stderr."""
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr == f"prototxt-gen: error: {message}\n"
