"""`prototxt-gen resnet50/101` reproduce the original release byte for byte; 152 follows
its rules."""
import re
from collections import Counter

import pytest

from prototxt_gen import generate
from prototxt_gen.graph.shapes import count_params, infer

from conftest import KAIMING, run_cli


@pytest.mark.parametrize("depth", [50, 101])
def test_cli_output_is_byte_identical_to_release(depth):
    result = run_cli(f"resnet{depth}")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    golden = (KAIMING / f"ResNet-{depth}-deploy.prototxt").read_text()
    assert result.stdout == golden


@pytest.mark.parametrize("depth", [50, 101])
def test_api_output_is_byte_identical_to_release(depth):
    golden = (KAIMING / f"ResNet-{depth}-deploy.prototxt").read_text()
    assert generate(f"resnet{depth}").to_prototxt("original") == golden


# Per NOTES.md (counts) and the release's naming: Conv, BatchNorm, Scale, ReLU, Eltwise, ...
COUNTS = {
    50: dict(total=228, Convolution=53, BatchNorm=53, Scale=53, ReLU=49, Eltwise=16, Pooling=2,
             InnerProduct=1, Softmax=1),
    101: dict(total=449, Convolution=104, BatchNorm=104, Scale=104, ReLU=100, Eltwise=33,
              Pooling=2, InnerProduct=1, Softmax=1),
    152: dict(total=670, Convolution=155, BatchNorm=155, Scale=155, ReLU=151, Eltwise=50,
              Pooling=2, InnerProduct=1, Softmax=1),
}
PARAMS = {50: (25_557_096, 53_173), 101: (44_549_160, 105_448), 152: (60_192_808, 151_579)}
BLOCKS = {
    50: ["2a", "2b", "2c", "3a", "3b", "3c", "3d", "4a", "4b", "4c", "4d", "4e", "4f",
         "5a", "5b", "5c"],
    101: ["2a", "2b", "2c", "3a"] + [f"3b{i}" for i in range(1, 4)] + ["4a"]
         + [f"4b{i}" for i in range(1, 23)] + ["5a", "5b", "5c"],
    152: ["2a", "2b", "2c", "3a"] + [f"3b{i}" for i in range(1, 8)] + ["4a"]
         + [f"4b{i}" for i in range(1, 36)] + ["5a", "5b", "5c"],
}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_layer_counts_names_and_parameters(depth):
    net = generate(f"resnet{depth}")
    types = Counter(l.type for l in net.layers)
    assert dict(types, total=len(net.layers)) == COUNTS[depth]
    blocks = [l.name[3:] for l in net.layers if l.type == "Eltwise"]
    assert blocks == BLOCKS[depth]
    pc = count_params(infer(net))
    assert (pc.learnable, pc.batchnorm) == PARAMS[depth]
    conv1 = net.layer("conv1").param.convolution_param
    assert conv1.bias_term == (depth == 50)


def test_resnet152_text_follows_the_101_release_rules():
    """No golden file for 152 here: check it line by line against the rules of the 101 file."""
    text = generate("resnet152").to_prototxt("original")
    r101 = (KAIMING / "ResNet-101-deploy.prototxt").read_text()
    # The same kinds of lines, modulo names and numbers.
    def kinds_of_line(t):
        return {re.sub(r'"[^"]*"|\d+', "_", line) for line in t.splitlines()}
    assert kinds_of_line(text) == kinds_of_line(r101)
    assert text.startswith('name: "ResNet-152"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\n'
                           'input_dim: 224\ninput_dim: 224\n\nlayer {\n')
    assert text.endswith("}\n\n") and text.count("\n\n") == 671
    # ReLUs after convs write top first (1 + 2 per block), the ones after Eltwise bottom first.
    blocks = text.split("\n\n")[1:-1]
    relus = [b for b in blocks if '\ttype: "ReLU"' in b]
    top_first = [b for b in relus if b.split("\n")[1].startswith("\ttop:")]
    assert len(relus) == 151 and len(top_first) == 101
    assert all(re.search(r'name: "(conv1|res\w+_branch2[ab])_relu"', b) for b in top_first)
    assert '\tname: "res4b35_branch2c"' in text and '\tname: "scale4b35_branch2c"' in text


def test_resnet101_release_orders_conv_relus_top_first():
    """The release itself: what the conv_relu_top_first option reproduces."""
    blocks = (KAIMING / "ResNet-101-deploy.prototxt").read_text().split("\n\n")[1:-1]
    top_first = [b for b in blocks if b.split("\n")[1].startswith("\ttop:")]
    assert len(top_first) == 67 and all('type: "ReLU"' in b for b in top_first)
    r50 = (KAIMING / "ResNet-50-deploy.prototxt").read_text().split("\n\n")[1:-1]
    assert not [b for b in r50 if b.split("\n")[1].startswith("\ttop:")]
