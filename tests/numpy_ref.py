"""A plain NumPy reading of Caffe's layer arithmetic (the loops of Caffe's *_layer.cpp, as
recorded in caffe_facts.md), independent of the PyTorch translator: for the layers OpenCV lacks
(Bias, Tile, Reduction, stochastic pooling...) or computes differently (LRN within a channel;
Axpy, which OpenCV 4 computes as a·y + x). check_layers() feeds each layer the exact values our module gave its bottoms."""
import math

import numpy as np

from prototxt_gen.proto import caffe_pb2

REF = {}


def ref(*types):
    def register(fn):
        for t in types:
            REF[t] = fn
        return fn
    return register


def _spatial(pp, name, h, w, default):
    if pp.HasField(h):
        return getattr(pp, h), getattr(pp, w)
    if pp.HasField(name):
        return getattr(pp, name), getattr(pp, name)
    return default, default


@ref("ConvolutionDepthwise")
def depthwise(layer, x):
    """The fork's ConvolutionDepthwise: each channel convolved with its own kernel."""
    cp = layer.param.convolution_param
    k, s = cp.kernel_size[0], (list(cp.stride) or [1])[0]
    p, d = (list(cp.pad) or [0])[0], (list(cp.dilation) or [1])[0]
    w = np.asarray(layer.blobs[0], np.float64)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (p, p), (p, p)))
    ho = (x.shape[2] + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (x.shape[3] + 2 * p - d * (k - 1) - 1) // s + 1
    out = np.zeros(x.shape[:2] + (ho, wo))
    for a in range(k):
        for b in range(k):
            out += xp[:, :, a * d:a * d + s * (ho - 1) + 1:s, b * d:b * d + s * (wo - 1) + 1:s] \
                * w[None, :, 0, a, b, None, None]
    if cp.bias_term:
        out += np.asarray(layer.blobs[1], np.float64)[None, :, None, None]
    return [out.astype(np.float32)]


@ref("Upsample")
def upsample(layer, x, mask=None):
    """SegNet's upsample_layer.cpp: zeros, then each value at its pooling mask's index; with
    one bottom, YOLOv3 ports' nearest (each value repeated scale times)."""
    from prototxt_gen.layers.resize import upsample_size
    sh, sw, oh, ow = upsample_size(layer, x.shape)
    if mask is None:
        return [x.repeat(sh, 2).repeat(sw, 3)[:, :, :oh, :ow]]
    n, c = x.shape[:2]
    out = np.zeros((n, c, oh * ow), np.float32)
    for a in range(n):
        for b in range(c):
            for v, i in zip(x[a, b].ravel(), mask[a, b].ravel()):
                out[a, b, int(i)] = v
    return [out.reshape(n, c, oh, ow)]


@ref("Pooling")
def pooling(layer, x):
    pp = layer.param.pooling_param
    P = caffe_pb2.PoolingParameter
    n, c, H, W = x.shape
    if pp.global_pooling:
        (kh, kw), (ph, pw), (sh, sw) = (H, W), (0, 0), (1, 1)
    else:
        kh, kw = _spatial(pp, "kernel_size", "kernel_h", "kernel_w", None)
        ph, pw = _spatial(pp, "pad", "pad_h", "pad_w", 0)
        sh, sw = _spatial(pp, "stride", "stride_h", "stride_w", 1)
    rnd = math.ceil if pp.round_mode == P.CEIL else math.floor
    oh = rnd((H + 2 * ph - kh) / sh) + 1
    ow = rnd((W + 2 * pw - kw) / sw) + 1
    if ph or pw:
        oh -= (oh - 1) * sh >= H + ph
        ow -= (ow - 1) * sw >= W + pw
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            if pp.pool == P.STOCHASTIC:  # test time: sum(x^2) / sum(x), no padding
                hs, ws = i * sh, j * sw
                win = x[:, :, hs:min(hs + kh, H), ws:min(ws + kw, W)].astype(np.float64)
                out[:, :, i, j] = ((win * win).sum((2, 3))
                                   / (win.sum((2, 3)) + np.finfo(np.float32).tiny))
                continue
            hs, ws = i * sh - ph, j * sw - pw
            he, we = min(hs + kh, H + ph), min(ws + kw, W + pw)
            size = (he - hs) * (we - ws)
            win = x[:, :, max(hs, 0):min(he, H), max(ws, 0):min(we, W)]
            if pp.pool == P.MAX:  # Caffe starts from -FLT_MAX: an empty window keeps it
                out[:, :, i, j] = win.max((2, 3)) if win.size else -np.finfo(np.float32).max
            else:
                out[:, :, i, j] = win.sum((2, 3), dtype=np.float64) / size
    return [out]


@ref("LRN")
def lrn(layer, x):
    lp = layer.param.lrn_param
    size, alpha, beta = lp.local_size, lp.alpha, lp.beta
    x = x.astype(np.float64)
    pre = (size - 1) // 2
    if lp.norm_region == caffe_pb2.LRNParameter.ACROSS_CHANNELS:
        sq = np.pad(x * x, ((0, 0), (pre, size - 1 - pre), (0, 0), (0, 0)))
        window = sum(sq[:, k:k + x.shape[1]] for k in range(size))
        return [x * (lp.k + alpha / size * window) ** -beta]
    # WITHIN_CHANNEL: AVE pool of x^2 (zero padding counted: divisor size*size), then
    # Power(shift 1, scale alpha, power -beta); k is not used.
    sq = np.pad(x * x, ((0, 0), (0, 0), (pre, pre), (pre, pre)))
    H, W = x.shape[2:]
    avg = sum(sq[:, :, a:a + H, b:b + W] for a in range(size) for b in range(size)) / size ** 2
    return [x * (1 + alpha * avg) ** -beta]


@ref("MVN")
def mvn(layer, x):
    mp = layer.param.mvn_param
    axes = tuple(range(1 if mp.across_channels else 2, x.ndim))
    x = x.astype(np.float64)
    y = x - x.mean(axes, keepdims=True)
    if mp.normalize_variance:
        y = y / (np.sqrt((y * y).mean(axes, keepdims=True)) + mp.eps)
    return [y]


@ref("Axpy")
def axpy(layer, a, x, y):
    return [a * x + y]


@ref("BatchNorm")
def batch_norm(layer, x):
    mean, var, s = (np.asarray(b, np.float64).reshape(-1) for b in layer.blobs)
    f = 0 if s[0] == 0 else 1 / s[0]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return [(x - (mean * f).reshape(shape))
            / np.sqrt((var * f).reshape(shape) + layer.param.batch_norm_param.eps)]


def _broadcast(x, factor, axis):
    axis %= x.ndim
    return factor.reshape((1,) * axis + factor.shape + (1,) * (x.ndim - axis - factor.ndim))


@ref("BN")
def fork_bn(layer, x):
    """The forks' BN (docs/caffe.md §13), each fork's bn_layer.cpp in its order of float32
    operations: the mean subtracted, times (var + eps)^-1/2 (or divided by the batch's
    sqrt(var + eps)), times the slope, plus the bias."""
    from prototxt_gen.layers.normalization import bn_form
    f32 = np.float32
    form, eps, _ = bn_form(layer)
    c = x.shape[1]
    scale, shift = (np.asarray(b, f32).reshape(1, c, 1, 1) for b in layer.blobs[:2])
    if form == "scale and shift":
        return [x * scale + shift]
    if form == "moving statistics":
        mean, var = (np.asarray(b, f32).reshape(1, c, 1, 1) for b in layer.blobs[2:4])
        return [((x - mean) * np.power(var + f32(eps), f32(-0.5))) * scale + shift]
    mean = x.astype(np.float64).mean(axis=(0, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True)
    return [((x - mean.astype(f32)) / np.sqrt(var + eps).astype(f32)) * scale + shift]


@ref("Scale")
def scale(layer, x, factor=None):
    sp = layer.param.scale_param
    blobs = list(layer.blobs)
    if factor is None:
        factor = blobs.pop(0)
    y = x * _broadcast(x, np.asarray(factor), sp.axis)
    if sp.bias_term:
        y = y + _broadcast(x, np.asarray(blobs[0]), sp.axis)
    return [y]


@ref("Bias")
def bias(layer, x, term=None):
    term = np.asarray(layer.blobs[0] if term is None else term)
    return [x + _broadcast(x, term, layer.param.bias_param.axis)]


@ref("Eltwise")
def eltwise(layer, *xs):
    ep = layer.param.eltwise_param
    E = caffe_pb2.EltwiseParameter
    if ep.operation == E.PROD:
        return [np.prod(xs, axis=0)]
    if ep.operation == E.MAX:
        return [np.max(xs, axis=0)]
    coeffs = list(ep.coeff) or [1] * len(xs)
    return [sum(c * x.astype(np.float64) for c, x in zip(coeffs, xs))]


@ref("Power")
def power(layer, x):
    pp = layer.param.power_param
    return [(pp.shift + pp.scale * x.astype(np.float64)) ** pp.power]


@ref("Exp")
def exp(layer, x):
    ep = layer.param.exp_param
    base = math.e if ep.base == -1 else ep.base
    return [base ** (ep.shift + ep.scale * x.astype(np.float64))]


@ref("Log")
def log(layer, x):
    lp = layer.param.log_param
    y = np.log(lp.shift + lp.scale * x.astype(np.float64))
    return [y if lp.base == -1 else y / math.log(lp.base)]


@ref("ELU")
def elu(layer, x):
    a = layer.param.elu_param.alpha
    return [np.where(x > 0, x, a * (np.exp(np.minimum(x, 0).astype(np.float64)) - 1))]


@ref("BNLL")
def bnll(layer, x):
    x = x.astype(np.float64)
    return [np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(x)))]


@ref("Threshold")
def threshold(layer, x):
    return [(x > layer.param.threshold_param.threshold).astype(np.float64)]


@ref("Clip")
def clip(layer, x):
    return [np.clip(x, layer.param.clip_param.min, layer.param.clip_param.max)]


@ref("Swish")
def swish(layer, x):
    x = x.astype(np.float64)
    return [x / (1 + np.exp(-layer.param.swish_param.beta * x))]


@ref("HardSwish")
def hard_swish(layer, x):  # the forks' HardSwish (MobileNetV3): x * ReLU6(x + 3) / 6
    x = x.astype(np.float64)
    return [x * np.clip(x + 3, 0, 6) / 6]


@ref("Mish")
def mish(layer, x):  # x * tanh(ln(1 + e^x))
    x = x.astype(np.float64)
    return [x * np.tanh(np.log1p(np.exp(x)))]


@ref("PReLU")
def prelu(layer, x):
    slope = np.asarray(layer.blobs[0], np.float64)
    return [np.where(x > 0, x, x * _broadcast(x, slope, 1) if slope.size > 1 else x * slope[0])]


@ref("Reduction")
def reduction(layer, x):
    rp = layer.param.reduction_param
    R = caffe_pb2.ReductionParameter
    axis = rp.axis % x.ndim
    flat = x.reshape(x.shape[:axis] + (-1,)).astype(np.float64)
    y = {R.SUM: flat.sum(-1), R.ASUM: np.abs(flat).sum(-1), R.SUMSQ: (flat * flat).sum(-1),
         R.MEAN: flat.mean(-1)}[rp.operation]
    return [rp.coeff * y]


@ref("Tile")
def tile(layer, x):
    tp = layer.param.tile_param
    reps = [1] * x.ndim
    reps[tp.axis % x.ndim] = tp.tiles
    return [np.tile(x, reps)]


@ref("Softmax")
def softmax(layer, x):
    axis = layer.param.softmax_param.axis
    e = np.exp(x - x.max(axis, keepdims=True))
    return [e / e.sum(axis, keepdims=True)]


@ref("InnerProduct")
def inner_product(layer, x):
    # inner_product_layer.cpp: the axes from `axis` on flattened; weights (num_output, K), or
    # (K, num_output) with transpose.
    ip = layer.param.inner_product_param
    axis = ip.axis % x.ndim
    flat = x.reshape(x.shape[:axis] + (-1,)).astype(np.float64)
    w = np.asarray(layer.blobs[0], np.float64)
    y = flat @ (w if ip.transpose else w.T)
    return [y + np.asarray(layer.blobs[1], np.float64) if ip.bias_term else y]


@ref("Sigmoid")
def sigmoid(layer, x):
    return [1 / (1 + np.exp(-x.astype(np.float64)))]


@ref("TanH")
def tanh(layer, x):
    return [np.tanh(x.astype(np.float64))]


@ref("ReLU6")
def relu6(layer, x):
    return [np.clip(x, 0, 6)]


@ref("Split")
def split(layer, x):
    return [x] * len(layer.top)


@ref("Silence")
def silence(layer, *xs):
    return []


@ref("Parameter")
def parameter(layer):
    return [np.asarray(layer.blobs[0])]


@ref("Normalize")
def normalize(layer, x):
    # SSD's normalize_layer.cpp: x / sqrt(sum x² + eps) over C,H,W (across_spatial) or over C
    # at each position, times a per-channel (or one shared) scale.
    across = layer.extra_value("norm_param", "across_spatial", True)
    eps = layer.extra_value("norm_param", "eps", 1e-10)
    x = x.astype(np.float64)
    axes = tuple(range(1, x.ndim)) if across else (1,)
    norm = np.sqrt((x * x).sum(axes, keepdims=True) + eps)
    scale = np.asarray(layer.blobs[0], np.float64)
    scale = scale.reshape((1, -1) + (1,) * (x.ndim - 2)) if scale.size > 1 else scale[0]
    return [x / norm * scale]


@ref("ShuffleChannel")
def shuffle_channel(layer, x):
    g = layer.extra_value("shuffle_channel_param", "group", 1)
    n, c = x.shape[:2]
    return [x.reshape((n, g, c // g) + x.shape[2:]).swapaxes(1, 2).reshape(x.shape)]


@ref("ArgMax")
def argmax(layer, x):
    # argmax_layer.cpp: the top_k largest (sorted, largest first) along `axis`; without an
    # axis over each item's values, as (N, 1 or 2, top_k) with indices then values.
    ap = layer.param.argmax_param
    k = ap.top_k
    if ap.HasField("axis"):
        order = np.flip(np.argsort(x, axis=ap.axis, kind="stable"), ap.axis)
        index = np.take(order, range(k), axis=ap.axis)
        values = np.take_along_axis(x, index, ap.axis)
        return [values if ap.out_max_val else index.astype(np.float64)]
    flat = x.reshape(x.shape[0], -1)
    index = np.flip(np.argsort(flat, axis=1, kind="stable"), 1)[:, :k]
    values = np.take_along_axis(flat, index, 1)
    out = np.stack([index, values], 1) if ap.out_max_val else index[:, None]
    return [out.reshape(out.shape + (1,) * max(0, x.ndim - 3))]


def check_layers(model, net, inputs, types=None, bound=1e-4):
    """Every layer of `net` whose type has a reference (or is in `types`): its outputs in our
    PyTorch module equal the reference's, given the values our module fed its bottoms.
    Returns the names of the layers checked."""
    outs = {name: [t.detach().numpy() for t in tops]
            for name, tops in model.layer_outputs(*inputs).items()}
    given = {name: t.detach().numpy() for name, t in zip(model.input_names, inputs)}
    return check_values(net, given, outs, types, bound)


def check_values(net, inputs, layer_tops, types=None, bound=1e-4):
    """check_layers for any back end: `inputs` maps the net's input blobs to arrays and
    `layer_tops` each layer's name to the arrays it wrote to its tops."""
    current = dict(inputs)
    checked = []
    for layer in net.layers:
        tops = layer_tops[layer.name]
        fn = REF.get(layer.type)
        if fn is not None and (types is None or layer.type in types):
            want = fn(layer, *[current[b] for b in layer.bottom])
            for name, got, exp_ in zip(layer.top, tops, want):
                err = np.abs(got - exp_).max()
                limit = bound * max(1.0, np.abs(exp_).max())
                assert err <= limit, f"layer '{layer.name}' top '{name}': max|Δ| {err:.3g}"
            checked.append(layer.name)
        current.update(zip(layer.top, tops))
    return checked
