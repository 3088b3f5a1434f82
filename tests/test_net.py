"""The Net API: building by hand, errors that name the layer, Caffe's shape arithmetic."""
import pytest

from prototxt_gen import Net, NetError
from prototxt_gen.graph.shapes import count_params, infer
from prototxt_gen.layers.pooling import pooling_output


def small_net():
    net = Net("tiny")
    net.add_input("data", (2, 3, 32, 32))
    net.add_layer("Convolution", "conv1", "data",
                  convolution_param=dict(num_output=16, kernel_size=3, pad=1, stride=2))
    net.add_layer("ReLU", "relu1", "conv1", "conv1")
    net.add_layer("Pooling", "pool1", "conv1",
                  pooling_param=dict(pool="AVE", kernel_size=3, stride=2))
    net.add_layer("InnerProduct", "fc", "pool1", inner_product_param=dict(num_output=5))
    return net


def test_build_by_hand_and_print():
    net = small_net()
    assert [l.name for l in net] == ["conv1", "relu1", "pool1", "fc"]
    assert net.layer("relu1").in_place and not net.layer("conv1").in_place
    shapes = {s.layer.name: (s.tops, s.blobs) for s in infer(net)}
    assert shapes["conv1"] == ([(2, 16, 16, 16)], [(16, 3, 3, 3), (16,)])
    assert shapes["pool1"][0] == [(2, 16, 8, 8)]  # ceil((16 - 3) / 2) + 1 = 8
    assert shapes["fc"] == ([(2, 5)], [(5, 1024), (5,)])
    assert count_params(infer(net)).learnable == 16 * 27 + 16 + 5 * 1024 + 5
    text = net.to_prototxt()
    assert 'pool: AVE' in text and text.startswith('name: "tiny"\nlayer {\n  name: "data"')


@pytest.mark.parametrize("call,message", [
    (lambda n: n.add_layer("ReLU", "conv1", "data"), "layer 'conv1': a layer with this name already exists"),
    (lambda n: n.add_layer("ReLU", "r", "nothing"), "layer 'r': bottom 'nothing' is not produced"),
    (lambda n: n.add_layer("ReLU", "r", "data", "conv1"), "layer 'r': top 'conv1' is already produced"),
    (lambda n: n.add_layer("Convolution", "c", "data", convolution_parm={}),
     "layer 'c': LayerParameter has no field 'convolution_parm' (did you mean 'convolution_param'?)"),
    (lambda n: n.add_layer("Pooling", "p", "data", pooling_param=dict(pool="MEAN")),
     "layer 'p': pooling_param.pool: 'MEAN' is not one of MAX, AVE, STOCHASTIC"),
    (lambda n: n.add_layer("Convolution", "c", "data", convolution_param=dict(num_output=-1)),
     "layer 'c': convolution_param.num_output: expected a non-negative integer, got -1"),
    (lambda n: n.add_layer("Convolution", "c", "data", convolution_param=dict(bias_term=1)),
     "layer 'c': convolution_param.bias_term: expected true or false, got 1"),
    (lambda n: n.add_layer("Convolution", "c", "data", convolution_param=5),
     "layer 'c': convolution_param: expected a table of ConvolutionParameter fields, got 5"),
    (lambda n: n.add_input("data", (1, 3)), "input 'data' is declared twice"),
    (lambda n: n.add_input("x", (1, 0, 3)), "input 'x': shape (1, 0, 3) must have positive"),
])
def test_building_errors_name_the_layer(call, message):
    with pytest.raises(NetError) as exc:
        call(small_net())
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize("params,bottom,message", [
    (dict(convolution_param=dict(num_output=8, kernel_size=5)), (1, 3, 4, 4),
     "layer 'bad' (Convolution): kernel extent 5 does not fit input size 4 with pad 0 (input 1×3×4×4)"),
    (dict(convolution_param=dict(num_output=8, kernel_size=3, group=2)), (1, 3, 8, 8),
     "layer 'bad' (Convolution): group 2 must divide both the 3 input channels and num_output 8 (input 1×3×8×8)"),
    (dict(convolution_param=dict(num_output=8, kernel_size=3, kernel_h=3, kernel_w=3)), (1, 3, 8, 8),
     "layer 'bad' (Convolution): give either kernel_size or kernel_h/kernel_w, not both (input 1×3×8×8)"),
    (dict(convolution_param=dict(num_output=8)), (1, 3, 8, 8),
     "layer 'bad' (Convolution): kernel_size (or kernel_h/kernel_w) is required (input 1×3×8×8)"),
    (dict(pooling_param=dict(kernel_size=3, pad=3)), (1, 3, 8, 8),
     "layer 'bad' (Pooling): pad [3, 3] must be smaller than kernel [3, 3] (input 1×3×8×8)"),
    (dict(pooling_param=dict(global_pooling=True, stride=2)), (1, 3, 8, 8),
     "layer 'bad' (Pooling): global_pooling requires pad 0 and stride 1 (input 1×3×8×8)"),
])
def test_shape_errors_name_the_layer(params, bottom, message):
    net = Net("x")
    net.add_input("data", bottom)
    kind = "Convolution" if "convolution_param" in params else "Pooling"
    net.add_layer(kind, "bad", "data", **params)
    with pytest.raises(NetError) as exc:
        infer(net)
    assert str(exc.value) == message


def test_unknown_type_and_missing_blob_are_reported():
    net = Net("x")
    net.add_input("data", (1, 3, 8, 8))
    net.add_layer("Frobnicate", "f", "data")
    with pytest.raises(NetError, match=r"^layer 'f' \(Frobnicate\): no shape rule for layer type"):
        infer(net)
    net.layers[0].param.bottom[0] = "ghost"
    with pytest.raises(NetError, match=r"bottom 'ghost' is not produced"):
        infer(net)


def brute_force_pooled(size, kernel, pad, stride):
    """Caffe's pooled size by enumeration instead of formula: windows start at -pad and every
    `stride` after, until one reaches the end of the padded input (rounding up covers it all);
    with padding, a last window that starts in the right padding is dropped (the clip rule)."""
    count, start = 0, -pad
    while True:
        count += 1
        if start + kernel >= size + pad:
            break
        start += stride
    if pad and start >= size:
        count -= 1
    return count


@pytest.mark.parametrize("size", range(1, 40))
@pytest.mark.parametrize("kernel,pad,stride", [(3, 0, 2), (3, 1, 2), (2, 1, 2), (2, 0, 2),
                                               (7, 0, 1), (5, 2, 3), (3, 2, 1), (4, 3, 3)])
def test_pooling_rounding_matches_window_enumeration(size, kernel, pad, stride):
    if kernel > size + 2 * pad:
        pytest.skip("the window is larger than the padded input: no output size to compare")
    assert pooling_output(size, kernel, pad, stride, ceil=True) == \
        brute_force_pooled(size, kernel, pad, stride)


def test_pooling_examples_from_caffe_facts():
    assert pooling_output(112, 3, 0, 2, ceil=True) == 56   # ResNet pool1
    assert pooling_output(112, 3, 1, 2, ceil=False) == 56  # torchvision's equivalent
    assert pooling_output(7, 7, 0, 1, ceil=True) == 1      # pool5
    assert pooling_output(5, 2, 1, 2, ceil=True) == 3      # ceil gives 4, the clip rule 3
    assert pooling_output(5, 2, 1, 2, ceil=False) == 3
