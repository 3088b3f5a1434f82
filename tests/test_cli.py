"""The command line as a user meets it: output, options, errors, exit codes, atomic files."""
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from prototxt_gen import __version__
from prototxt_gen.proto.prototxt import parse_prototxt

from conftest import KAIMING, ROOT, run_cli


def test_list_shows_every_template_with_a_description():
    result = run_cli("list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [l.split()[0] for l in lines] == [
        "inception_resnet_v1", "resnet18", "resnet18_tv", "resnet34", "resnet34_tv", "resnet50",
        "resnet50_tv", "resnet50_v2", "resnet101", "resnet101_tv", "resnet101_v2", "resnet152",
        "resnet152_tv", "resnet152_v2", "resnet200_v2", "resnext50_32x4d", "resnext101_32x8d",
        "wide_resnet50_2", "wide_resnet101_2"]
    assert all(len(l.split(None, 1)) == 2 for l in lines)
    assert "original MSRA Caffe release" in next(l for l in lines if l.startswith("resnet50 "))


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"prototxt-gen {__version__}"
    help_text = run_cli("--help").stdout
    for needle in ("--input-shape", "--num-classes", "--input-style", "--spec", "-o FILE",
                   "examples:", "prototxt-gen resnet50 > deploy.prototxt", "exit status"):
        assert needle in help_text


def test_unknown_model_suggests_close_names():
    result = run_cli("resnet5")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("prototxt-gen: error: unknown model 'resnet5' "
                             "(did you mean resnet50, resnet152, resnet34?)\n")


def test_options_change_the_network():
    result = run_cli("resnet50", "--input-shape", "8,3,448,320", "--num-classes", "10",
                     "--input-style", "input_shape")
    assert result.returncode == 0, result.stderr
    proto = parse_prototxt(result.stdout)
    assert [list(s.dim) for s in proto.input_shape] == [[8, 3, 448, 320]]
    assert not proto.input_dim
    pool5 = next(l for l in proto.layer if l.name == "pool5").pooling_param
    assert (pool5.kernel_h, pool5.kernel_w) == (14, 10)  # the 14x10 feature map
    fc = next(l for l in proto.layer if l.type == "InnerProduct")
    assert (fc.name, fc.inner_product_param.num_output) == ("fc10", 10)
    assert list(next(l for l in proto.layer if l.name == "prob").bottom) == ["fc10"]


def test_layout_modern_uses_an_input_layer_by_default():
    text = run_cli("resnet50", "--layout", "modern").stdout
    assert text.startswith('name: "ResNet-50"\nlayer {\n  name: "data"\n  type: "Input"\n')
    text = run_cli("resnet50", "--layout", "modern", "--input-style", "input_dim").stdout
    assert text.startswith('name: "ResNet-50"\ninput: "data"\ninput_dim: 1\n')


@pytest.mark.parametrize("args,message", [
    (["resnet50", "--input-shape", "1,3,224"], "--input-shape: expected N,C,H,W"),
    (["resnet50", "--input-shape", "1,3,0,224"], "--input-shape: expected N,C,H,W"),
    (["resnet50", "--num-classes", "0"], "--num-classes: expected a positive integer"),
    (["resnet50", "--input-style", "xml"], "--input-style: invalid choice"),
    (["resnet50", "--bogus"], "unrecognized arguments: --bogus"),
    (["resnet50", "--spec", "x.toml"], "give a model name or --spec FILE, not both"),
    ([], "no model given"),
])
def test_usage_errors_are_one_line_with_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("prototxt-gen: error: ")
    assert message in result.stderr


def test_output_file_is_written_atomically(tmp_path):
    out = tmp_path / "deploy.prototxt"
    out.write_text("old")
    os.chmod(out, 0o640)
    result = run_cli("resnet50", "-o", out)
    assert result.returncode == 0 and result.stdout == ""
    assert out.read_text() == (KAIMING / "ResNet-50-deploy.prototxt").read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # an existing file keeps its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt"]  # no temp left


def fixed_pool_spec(tmp_path):
    """ResNet-18 with the head's pooling kernel fixed at 7, as in the 224x224 release."""
    text = (ROOT / "templates" / "resnet18.toml").read_text()
    spec = tmp_path / "fixed.toml"
    spec.write_text(text.replace('pool_kernel = "auto"', "pool_kernel = 7"))
    return spec


def test_input_too_small_names_the_layer(tmp_path):
    spec = fixed_pool_spec(tmp_path)
    assert run_cli("--spec", spec).returncode == 0
    result = run_cli("--spec", spec, "--input-shape", "1,3,64,64")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("prototxt-gen: error: layer 'pool5' (Pooling): kernel 7 does not "
                             "fit input size 2 with pad 0 (input 1×512×2×2)\n")


def test_failed_run_leaves_existing_output_untouched(tmp_path):
    out = tmp_path / "deploy.prototxt"
    out.write_text("precious")
    spec = fixed_pool_spec(tmp_path)
    result = run_cli("--spec", spec, "--input-shape", "1,3,64,64", "-o", out)
    assert result.returncode == 2
    assert out.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt", "fixed.toml"]


def test_unwritable_output_is_exit_1(tmp_path):
    result = run_cli("resnet50", "-o", tmp_path / "missing" / "deploy.prototxt")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("prototxt-gen: error: ") and result.stderr.count("\n") == 1
    assert "missing/deploy.prototxt: cannot write: No such file or directory" in result.stderr
    result = run_cli("resnet50", "-o", tmp_path)
    assert result.returncode == 1 and "is a directory" in result.stderr


def test_closed_pipe_is_quiet():
    proc = subprocess.run(f"{sys.executable} -m prototxt_gen resnet152 | head -c 10",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert proc.stdout == 'name: "Res'
    assert proc.stderr == ""


def test_generation_never_imports_heavy_modules():
    """`prototxt-gen resnet152` must not even try to import torch or onnx (nor numpy, graphviz,
    cv2): a finder placed first on sys.meta_path records every attempt, installed or not."""
    code = textwrap.dedent("""
        import io, sys, contextlib
        BANNED = {"torch", "onnx", "onnxruntime", "numpy", "graphviz", "cv2"}
        tried = []
        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BANNED:
                    tried.append(name)
                return None
        sys.meta_path.insert(0, Spy())
        from prototxt_gen.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["resnet152"])
        assert rc == 0 and out.getvalue().count("layer {") == 670
        print(sorted(set(tried)), sorted(m for m in sys.modules if m.partition(".")[0] in BANNED))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []"
