"""ResNet-18/34: basic blocks with Kaiming-style names, stride and shortcuts where they belong."""
import pytest

from prototxt_gen import generate
from prototxt_gen.graph.shapes import count_params, infer

# torchvision's resnet18/resnet34 parameter counts (conv1 without bias, projection shortcuts only
# where shapes change): same arithmetic, so the same totals.
PARAMS = {18: 11_689_512, 34: 21_797_672}
UNITS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


@pytest.mark.parametrize("depth", [18, 34])
def test_structure(depth):
    net = generate(f"resnet{depth}")
    convs = {l.name: l.param.convolution_param for l in net.layers if l.type == "Convolution"}
    letters = "abcdefghijklmnopqrstuvwxyz"
    expected = {"conv1"}
    for stage, units in zip((2, 3, 4, 5), UNITS[depth]):
        for k in range(units):
            unit = f"{stage}{letters[k]}"
            expected |= {f"res{unit}_branch2a", f"res{unit}_branch2b"}
            for prefix in ("bn", "scale"):
                assert net.layer(f"{prefix}{unit}_branch2a").type in ("BatchNorm", "Scale")
            assert net.layer(f"res{unit}_branch2a_relu").type == "ReLU"
            assert net.layer(f"res{unit}").type == "Eltwise"
            a, b = convs[f"res{unit}_branch2a"], convs[f"res{unit}_branch2b"]
            assert list(a.kernel_size) == [3] and list(b.kernel_size) == [3]
            assert list(a.stride) == [2 if (k == 0 and stage > 2) else 1]
            assert list(b.stride) == [1]
    # Projections exactly where channels or stride change: res3a, res4a, res5a (not res2a).
    expected |= {"res3a_branch1", "res4a_branch1", "res5a_branch1"}
    assert set(convs) == expected
    for stage in (3, 4, 5):
        assert list(convs[f"res{stage}a_branch1"].stride) == [2]
        assert list(convs[f"res{stage}a_branch1"].kernel_size) == [1]
        assert list(net.layer(f"res{stage}a").bottom) == [f"res{stage}a_branch1",
                                                           f"res{stage}a_branch2b"]
    assert list(net.layer("res2a").bottom) == ["pool1", "res2a_branch2b"]
    assert not any(c.bias_term for c in convs.values())


@pytest.mark.parametrize("depth", [18, 34])
def test_parameter_count_and_shapes(depth):
    shapes = {s.layer.name: s.tops[0] for s in infer(generate(f"resnet{depth}"))}
    assert count_params(infer(generate(f"resnet{depth}"))).learnable == PARAMS[depth]
    assert shapes["pool1"] == (1, 64, 56, 56)
    assert shapes["res3a"] == (1, 128, 28, 28)
    assert shapes["res5b"] == (1, 512, 7, 7)
    assert shapes["pool5"] == (1, 512, 1, 1)
    assert shapes["fc1000"] == (1, 1000)
