"""The fuzzer as a test: a bounded, deterministic run of tests/fuzzing.py's cases (mutated zoo
files, caffemodels written by our writer, specs, odd output paths) across every command, and
hypothesis-drawn nets through the translators. Any traceback, hang, crash, stray output line,
partial output or peak RSS over the bound fails it. benchmarks/fuzz.py runs the long version."""
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prototxt_gen.cli import main

from conftest import ROOT
from fuzzing import synth_net

CASES = int(os.environ.get("PROTOTXT_GEN_FUZZ_CASES", "400"))


@pytest.mark.slow
def test_fuzz_every_command():
    """Cases 0..CASES-1, two at a time, in a fresh driver process (it forks one child per case,
    so nothing of this test process's threads or state is inherited)."""
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzzing.py"), "--cases",
                        f"0:{CASES}", "--jobs", "2", "--show"], capture_output=True, text=True,
                       timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert f"{CASES} cases run" in r.stdout


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data(), command=st.sampled_from([
    ["info"], ["info", "--format", "json"], ["convert", "--to", "onnx", "-o", "m.onnx"],
    ["convert", "--to", "python", "-o", "m.py"], ["render", "-o", "g.dot"]]))
def test_drawn_nets_fail_cleanly(tmp_path_factory, capsys, data, command):
    """Nets whose layers, wiring and parameters hypothesis draws: each command succeeds or
    fails with one line, and writes its whole output or none of it."""
    text = synth_net(lambda options: data.draw(st.sampled_from(options)))
    d = tmp_path_factory.mktemp("drawn")
    (d / "n.prototxt").write_text(text)
    argv = [command[0], str(d / "n.prototxt")] + [str(d / a) if a.startswith(("m.", "g."))
                                                 else a for a in command[1:]]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err, text)
    assert all(line.startswith("prototxt-gen: ") for line in err.splitlines()), (err, text)
    written = sorted(p.name for p in d.iterdir() if p.name != "n.prototxt")
    if code:
        assert err.count("\n") == 1 and not written, (err, written)
    elif command[0] != "info":
        assert written == sorted({"onnx": ["m.onnx"], "python": ["m.pth", "m.py"]}.get(
            command[2], ["g.dot"])), written
