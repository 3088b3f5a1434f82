"""Shape rules OpenCV cannot check (fork layers, data and loss layers, ArgMax...) and the
errors that name a layer when shapes do not fit. Expected values follow the Caffe sources'
Reshape() code as summarized in the comments."""
import pytest

from prototxt_gen.errors import NetError
from prototxt_gen.caffe.reader import read_prototxt
from prototxt_gen.graph.shapes import RULES, infer, rule


def shapes_of(body, inputs=(("data", (2, 6, 4, 4)),), phase=None):
    head = "".join(f'input: "{n}" input_shape {{ {" ".join(f"dim: {d}" for d in s)} }}\n'
                   for n, s in inputs)
    net = read_prototxt("t.prototxt", phase, text=head + body)
    return {s.layer.name: s.tops for s in infer(net)}


def fails(body, inputs=(("data", (2, 6, 4, 4)),)):
    with pytest.raises(NetError) as err:
        shapes_of(body, inputs)
    return str(err.value)


def test_axpy():
    got = shapes_of('layer { name: "x" type: "Axpy" bottom: "a" bottom: "data" bottom: "data" '
                    'top: "x" }', (("a", (2, 6, 1, 1)), ("data", (2, 6, 4, 4))))
    assert got["x"] == [(2, 6, 4, 4)]
    assert fails('layer { name: "x" type: "Axpy" bottom: "a" bottom: "data" bottom: "data" '
                 'top: "x" }', (("a", (2, 5, 1, 1)), ("data", (2, 6, 4, 4)))) == (
        "layer 'x' (Axpy): a 2×5×1×1 must be N×C×1×1 for x 2×6×4×4 "
        "(input 2×5×1×1, 2×6×4×4, 2×6×4×4)")


def test_argmax_tile_reduction():
    got = shapes_of("""
      layer { name: "am" type: "ArgMax" bottom: "data" top: "am" argmax_param { top_k: 3 } }
      layer { name: "amv" type: "ArgMax" bottom: "data" top: "amv"
              argmax_param { out_max_val: true } }
      layer { name: "amx" type: "ArgMax" bottom: "data" top: "amx"
              argmax_param { axis: 1 top_k: 2 } }
      layer { name: "tile" type: "Tile" bottom: "data" top: "tile" tile_param { axis: 2 tiles: 3 } }
      layer { name: "red" type: "Reduction" bottom: "data" top: "red"
              reduction_param { axis: 1 } }
      layer { name: "red0" type: "Reduction" bottom: "data" top: "red0" }
      layer { name: "sil" type: "Silence" bottom: "red" }
    """)
    # ArgMax without axis: (N, 1 or 2 with out_max_val, top_k, 1...) -- argmax_layer.cpp.
    assert got["am"] == [(2, 1, 3, 1)]
    assert got["amv"] == [(2, 2, 1, 1)]
    assert got["amx"] == [(2, 2, 4, 4)]
    assert got["tile"] == [(2, 6, 12, 4)]
    assert got["red"] == [(2,)]
    assert got["red0"] == [()]  # axis 0 (the default) reduces to a scalar
    assert got["sil"] == []


def test_data_and_loss_layers():
    got = shapes_of("""
      layer { name: "mem" type: "MemoryData" top: "img" top: "label"
              memory_data_param { batch_size: 4 channels: 3 height: 5 width: 6 } }
      layer { name: "dummy" type: "DummyData" top: "d1" top: "d2"
              dummy_data_param { shape { dim: 4 dim: 10 } } }
      layer { name: "loss" type: "SoftmaxWithLoss" bottom: "d1" bottom: "label" top: "loss" }
      layer { name: "acc" type: "Accuracy" bottom: "d1" bottom: "label" top: "acc" }
    """, ())
    assert got["mem"] == [(4, 3, 5, 6), (4,)]
    assert got["dummy"] == [(4, 10), (4, 10)]
    assert got["loss"] == [()]
    assert got["acc"] == [()]
    assert fails('layer { name: "d" type: "Data" top: "data" top: "label" '
                 'data_param { source: "x" batch_size: 4 } }', ()) == (
        "layer 'd' (Data): the file does not say the shape of top 'data' (a batch_size, and "
        "crop_size or new_height and new_width); give it with --input-shape data=N,C,H,W")


@pytest.mark.parametrize("layer,expected,assumed", [
    # Caffe's DataLayer: batch_size from data_param, H×W from the crop; channels unknown.
    ('type: "Data" top: "data" top: "label" transform_param { crop_size: 227 } '
     'data_param { source: "x" batch_size: 50 }', [(50, 3, 227, 227), (50,)], ["3 channels"]),
    ('type: "Data" top: "data" transform_param { crop_size: 28 force_gray: true } '
     'data_param { batch_size: 64 }', [(64, 1, 28, 28)], []),
    # ImageData: new_height × new_width without a crop; is_color says the channels.
    ('type: "ImageData" top: "data" top: "label" image_data_param { source: "list.txt" '
     'batch_size: 8 new_height: 256 new_width: 320 is_color: false }',
     [(8, 1, 256, 320), (8,)], []),
    ('type: "ImageData" top: "data" top: "label" transform_param { crop_size: 224 } '
     'image_data_param { source: "list.txt" new_height: 256 new_width: 256 }',
     [(1, 3, 224, 224), (1,)], []),  # ImageData's batch_size defaults to 1
    ('type: "WindowData" top: "data" top: "label" window_data_param { source: "w.txt" '
     'batch_size: 128 crop_size: 227 }', [(128, 3, 227, 227), (128,)], ["3 channels"]),
])
def test_dataset_layers_get_the_shapes_their_parameters_say(layer, expected, assumed):
    from prototxt_gen.layers.data import dataset_shapes
    net = read_prototxt("<t>", text=f'layer {{ name: "d" {layer} }}')
    assert shapes_of(f'layer {{ name: "d" {layer} }}', ())["d"] == expected
    assert dataset_shapes(net.layers[0]) == (expected, assumed)


def test_shapes_given_for_tops_the_file_does_not_size():
    net = read_prototxt("<t>", text=(
        'layer { name: "h5" type: "HDF5Data" top: "x" top: "y" hdf5_data_param { '
        'source: "f.txt" batch_size: 10 } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
        'inner_product_param { num_output: 3 } }'))
    with pytest.raises(NetError, match="give it with --input-shape x=N,C,H,W"):
        infer(net)
    net.set_shape("x", (10, 7))
    with pytest.raises(NetError, match="top 'y'"):
        infer(net)
    net.set_shape("y", (10,))
    assert [s.tops for s in infer(net)] == [[(10, 7), (10,)], [(10, 3)]]
    with pytest.raises(NetError, match="'fc' is computed by layer 'fc' \\(InnerProduct\\)"):
        net.set_shape("fc", (1, 3))
    with pytest.raises(NetError, match="no input or data layer top named 'z'"):
        net.set_shape("z", (1,))


@pytest.mark.parametrize("body,message", [
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" '
     'slice_param { slice_point: 2 slice_point: 4 } }',
     "layer 's' (Slice): 2 slice points need 3 tops, the layer has 2"),
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" top: "d" }',
     "layer 's' (Slice): axis 1 of size 6 does not split evenly into 4 tops"),
    ('layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
     'reshape_param { shape { dim: 0 dim: 5 dim: -1 } } }',
     "layer 'r' (Reshape): cannot infer the -1 dimension: 192 elements do not divide by 10"),
    ('layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
     'reshape_param { shape { dim: 2 dim: 7 } } }',
     "layer 'r' (Reshape): shape 2×7 has 14 elements, the input axes being replaced have 192"),
    ('layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" '
     'crop_param { offset: 2 } }',
     "layer 'c' (Crop): axis 2: offset 2 + size 3 exceeds 4"),
    ('layer { name: "p" type: "Permute" bottom: "data" top: "p" '
     'permute_param { order: 0 order: 0 } }',
     "layer 'p' (Permute): permute order [0, 0] is not a permutation of the 4 axes"),
    ('layer { name: "e" type: "Eltwise" bottom: "data" bottom: "ref" top: "e" }',
     "layer 'e' (Eltwise): all bottoms must have the same shape: 2×6×4×4, 2×6×3×3"),
    ('layer { name: "i" type: "InnerProduct" bottom: "data" top: "i" '
     'inner_product_param { num_output: 3 axis: 4 } }',
     "layer 'i' (InnerProduct): axis 4 is out of range for a 4-D blob"),
    ('layer { name: "u" type: "Unheard" bottom: "data" top: "u" }',
     "layer 'u' (Unheard): no shape rule for layer type 'Unheard'"),
])
def test_misfits_name_the_layer(body, message):
    text = fails(body, (("data", (2, 6, 4, 4)), ("ref", (2, 6, 3, 3))))
    assert text.startswith("t.prototxt: " + message) or text.startswith(message), text


def test_users_can_register_a_rule_for_their_own_layer():
    @rule("Upsample2x")
    def upsample(layer, bottoms):
        n, c, h, w = bottoms[0]
        factor = layer.extra.get("upsample_param", [{}])[0].get("scale", [2])[0]
        return [(n, c, h * factor, w * factor)], []

    try:
        got = shapes_of('layer { name: "u" type: "Upsample2x" bottom: "data" top: "u" '
                        'upsample_param { scale: 3 } }')
        assert got["u"] == [(2, 6, 12, 12)]
    finally:
        del RULES["Upsample2x"]
