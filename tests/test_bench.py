"""`prototxt-gen bench`: the seed's time_tensorflow_run line (mean ± sd per batch over the
timed batches), images/s, the per-layer table of both back ends, JSON, and its refusals. The
figures themselves belong to benchmarks/, not here: these check what is printed and that the
numbers agree with each other."""
import json
import math
import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from prototxt_gen.backends.bench import BenchResult

from conftest import assert_error, run_cli

SEED_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: Forward across (\d+) steps, "
                       r"(\d+\.\d{3}) \+/- (\d+\.\d{3}) sec / batch$")
NET = '''name: "tiny"
input: "data" input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
  pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc"
  inner_product_param { num_output: 4 } }
'''


def test_sd_is_the_seeds_population_deviation():
    r = BenchResult("pytorch", "cpu", 8, 0, [1.0, 2.0, 3.0, 6.0])
    assert r.mean == 3.0 and r.sd == pytest.approx(math.sqrt(12.5 - 9.0))
    assert r.images_per_s == pytest.approx(8 / 3.0)


@pytest.mark.parametrize("backend", ["pytorch", "onnxruntime"])
def test_text_output_and_per_layer_table(tmp_path, backend):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    r = run_cli("bench", path, "--backend", backend, "--batch", "4", "--iterations", "3",
                "--warmup", "1", "--threads", "1", "--per-layer")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"tiny: {backend} on cpu, 1 threads, batch 4, 1 warm-up batches"
    steps, mean, _ = SEED_LINE.match(lines[1]).groups()
    assert steps == "3" and float(mean) >= 0  # the seed's 3 decimals: 0.000 for a tiny net
    ips, ms = re.fullmatch(r"(\d+\.\d) images/s, (\d+\.\d{3}) ms / batch", lines[2]).groups()
    assert float(ms) > 0 and float(ips) == pytest.approx(4000 / float(ms), rel=0.05)  # ms rounded
    table = lines[lines.index("") + 2:]
    rows = {line.split()[0]: line.split() for line in table if not line.startswith("(")}
    assert rows["total"][-1] == "100.0%"
    if backend == "pytorch":  # every layer, timed in Caffe's order, listed by time
        assert set(rows) == {"conv", "bn", "relu", "pool", "fc", "total"}
        assert rows["conv"][1] == "Convolution"
    else:  # onnxruntime fuses BatchNorm and ReLU into the convolution: their time is its
        assert {"conv", "fc", "total"} <= set(rows) and "bn" not in rows
    shares = [float(v[-1].rstrip("%")) for k, v in rows.items() if k != "total"]
    assert abs(sum(shares) - 100) < 0.1 * len(shares)
    times = [float(v[-2]) for k, v in rows.items() if k != "total"]
    assert times == sorted(times, reverse=True)


def test_json_for_scripts(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    r = run_cli("bench", path, "--batch", "2", "--iterations", "4", "--warmup", "0",
                "--fuse", "--channels-last", "--format", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["net"], out["backend"], out["batch"], out["iterations"], out["fuse"],
            out["channels_last"]) == ("tiny", "pytorch", 2, 4, True, True)
    times = out["times_s"]
    assert len(times) == 4 and out["mean_s"] == pytest.approx(sum(times) / 4)
    assert out["images_per_s"] == pytest.approx(2 / out["mean_s"])
    assert out["per_layer"] is None


@pytest.mark.parametrize("args,message", [
    (["--backend", "onnxruntime", "--compile"],
     "--compile, --channels-last and --dtype apply to --backend pytorch"),
    (["--device", "tpu"], "--device must be cpu, cuda or cuda:N, not 'tpu'"),
])
def test_options_it_cannot_honour_are_one_line_errors(tmp_path, args, message):
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    assert_error(run_cli("bench", path, *args), message)


def test_compiled_channels_last_bfloat16_paths_run(tmp_path):
    """--compile (Inductor with freezing) and --dtype bfloat16 run and say so."""
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    for extra, dtype in ((["--compile", "--channels-last", "--fuse"], "float32"),
                         (["--dtype", "bfloat16", "--channels-last"], "bfloat16")):
        r = run_cli("bench", path, "--batch", "2", "--iterations", "2", "--warmup", "1",
                    "--format", "json", *extra)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["dtype"] == dtype and out["compile"] == ("--compile" in extra)
        assert len(out["times_s"]) == 2


def test_keep_memory_says_so(tmp_path):
    """--keep-memory raises glibc's mmap and trim thresholds for the process (this machine's
    C library is glibc) and the report says it did."""
    path = tmp_path / "tiny.prototxt"
    path.write_text(NET)
    r = run_cli("bench", path, "--batch", "2", "--iterations", "2", "--warmup", "0",
                "--keep-memory")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith(", freed memory kept")


def test_hostile_names_print_as_one_line_each(tmp_path):
    """A layer or net name may hold anything: a newline or a terminal escape is printed escaped,
    as `info` prints it, so it cannot forge a line of the report."""
    path = tmp_path / "evil.prototxt"
    path.write_text(NET.replace('name: "tiny"', 'name: "t\\x1b[2Jiny"')
                    .replace('name: "relu"', 'name: "relu\\nfc  InnerProduct  99.000  99.0%"'))
    r = run_cli("bench", path, "--batch", "1", "--iterations", "1", "--warmup", "0",
                "--per-layer")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and r.stdout.startswith("t\\x1b[2Jiny: pytorch")
    rows = [line for line in r.stdout.splitlines() if line.startswith(("relu", "fc "))]
    assert len(rows) == 2 and any(row.startswith("relu\\nfc  InnerProduct  99.000  99.0%  ReLU")
                                  for row in rows)
