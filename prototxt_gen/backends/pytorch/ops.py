"""PyTorch modules for Caffe layers that have no exact equivalent in torch.nn.

Each class depends on torch alone: the source exporter copies the ones a network uses into the
generated .py file, so the same code runs inside prototxt-gen and in the standalone export.
The arithmetic follows docs/caffe.md (§3 BatchNorm, §4 pooling) and Caffe's layer sources.
"""
import torch
import torch.nn.functional as F
from torch import nn


class CaffePool2d(nn.Module):
    """Caffe's 2-D pooling: ceil (default) or floor rounding with Caffe's clip rule; average
    divides by the window's extent inside the padded image (padding counts, the ceil overhang
    does not); max ignores padding; stochastic pooling in its test-time form."""

    def __init__(self, mode, kernel, stride=(1, 1), pad=(0, 0), ceil_mode=True,
                 global_pool=False):
        super().__init__()
        self.mode = mode  # "max", "ave" or "stochastic"
        self.kernel, self.stride, self.pad = tuple(kernel), tuple(stride), tuple(pad)
        self.ceil_mode = ceil_mode
        self.global_pool = global_pool

    def extra_repr(self):
        if self.global_pool:
            return f"{self.mode!r}, global_pool=True"
        return (f"{self.mode!r}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}, "
                f"ceil_mode={self.ceil_mode}")

    @staticmethod
    def output_size(size, k, s, p, ceil_mode):
        span = size + 2 * p - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if p and (out - 1) * s >= size + p:  # the last window must start inside the image
            out -= 1
        return out

    @staticmethod
    def _torch_size(size, k, s, p, ceil_mode):
        span = size + 2 * p - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        return out

    def forward(self, x):
        if self.global_pool:
            if self.mode == "max":
                return x.amax((-2, -1), keepdim=True)
            if self.mode == "ave":
                return x.mean((-2, -1), keepdim=True)
            return (x * x).sum((-2, -1), keepdim=True) / (
                x.sum((-2, -1), keepdim=True) + torch.finfo(x.dtype).tiny)
        k, s, p = self.kernel, self.stride, self.pad
        size = x.shape[-2:]
        out = [self.output_size(size[d], k[d], s[d], p[d], self.ceil_mode) for d in (0, 1)]
        if self.mode == "stochastic":
            return self._stochastic(x, out)
        # torch's pooling computes the same windows and divisor (count_include_pad) whenever
        # it agrees on the output size; it clips the last window even without padding, which
        # Caffe does not, and it limits padding to half the kernel.
        native = all(2 * p[d] <= k[d] and out[d] == self._torch_size(
            size[d], k[d], s[d], p[d], self.ceil_mode) for d in (0, 1))
        if native:
            if self.mode == "max":
                return F.max_pool2d(x, k, s, p, ceil_mode=self.ceil_mode)
            return F.avg_pool2d(x, k, s, p, ceil_mode=self.ceil_mode, count_include_pad=True)
        extra = [max(0, (out[d] - 1) * s[d] + k[d] - size[d] - p[d]) for d in (0, 1)]
        if self.mode == "max":
            padded = F.pad(x, (p[1], extra[1], p[0], extra[0]), value=float("-inf"))
            return F.max_pool2d(padded, k, s)[..., :out[0], :out[1]]
        padded = F.pad(x, (p[1], extra[1], p[0], extra[0]))
        total = F.avg_pool2d(padded, k, s, divisor_override=1)[..., :out[0], :out[1]]
        div = [(torch.clamp(torch.arange(out[d], device=x.device) * s[d] + k[d] - p[d],
                            max=size[d] + p[d]) - (torch.arange(out[d], device=x.device) * s[d]
                                                   - p[d])).to(x.dtype) for d in (0, 1)]
        return total / (div[0][:, None] * div[1][None, :])

    def _stochastic(self, x, out):
        # Test-time stochastic pooling: sum(x^2) / sum(x) over each window (no padding).
        k, s = self.kernel, self.stride
        size = x.shape[-2:]
        extra = [max(0, (out[d] - 1) * s[d] + k[d] - size[d]) for d in (0, 1)]
        num = F.avg_pool2d(F.pad(x * x, (0, extra[1], 0, extra[0])), k, s, divisor_override=1)
        den = F.avg_pool2d(F.pad(x, (0, extra[1], 0, extra[0])), k, s, divisor_override=1)
        return (num / (den + torch.finfo(x.dtype).tiny))[..., :out[0], :out[1]]


class Scale(nn.Module):
    """Caffe's Scale: multiply by a factor spanning axes [axis, axis + len(shape)) of the input,
    learned (`weight`) or given as a second input, and add `bias` if present."""

    def __init__(self, shape, trailing, learned=True, bias=True):
        super().__init__()
        self.view = tuple(shape) + (1,) * trailing
        self.weight = nn.Parameter(torch.ones(shape)) if learned else None
        self.bias = nn.Parameter(torch.zeros(shape)) if bias else None

    def forward(self, x, factor=None):
        factor = (self.weight if factor is None else factor).reshape(self.view)
        if self.bias is None:
            return x * factor
        return torch.addcmul(self.bias.reshape(self.view), x, factor)


class Bias(nn.Module):
    """Caffe's Bias: add a term spanning axes [axis, axis + len(shape)) of the input, learned
    (`bias`) or given as a second input."""

    def __init__(self, shape, trailing, learned=True):
        super().__init__()
        self.view = tuple(shape) + (1,) * trailing
        self.bias = nn.Parameter(torch.zeros(shape)) if learned else None

    def forward(self, x, term=None):
        return x + (self.bias if term is None else term).reshape(self.view)


class LRNWithinChannel(nn.Module):
    """Caffe's LRN with norm_region WITHIN_CHANNEL: x * (1 + alpha * avg(x^2))^-beta over a
    size×size window, the average counting the zero padding (Caffe builds it from an AVE pool
    with pad (size-1)/2 and a Power layer whose shift is 1; k is not used)."""

    def __init__(self, size, alpha, beta):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"

    def forward(self, x):
        avg = F.avg_pool2d(x * x, self.size, 1, (self.size - 1) // 2, ceil_mode=True,
                           count_include_pad=True)
        return x * torch.pow(1 + self.alpha * avg, -self.beta)


class MVN(nn.Module):
    """Caffe's MVN: subtract the mean over (C,)H,W and optionally divide by (std + eps)."""

    def __init__(self, normalize_variance=True, across_channels=False, eps=1e-9):
        super().__init__()
        self.normalize_variance = normalize_variance
        self.across_channels = across_channels
        self.eps = eps

    def forward(self, x):
        dims = tuple(range(1 if self.across_channels else 2, x.dim()))
        x = x - x.mean(dims, keepdim=True)
        if not self.normalize_variance:
            return x
        return x / ((x * x).mean(dims, keepdim=True).sqrt() + self.eps)


class Normalize(nn.Module):
    """SSD's Normalize: divide by the L2 norm over C,H,W (across_spatial) or over C at each
    position, then multiply by a learned per-channel (or shared) scale."""

    def __init__(self, channels, across_spatial=True, channel_shared=True, eps=1e-10):
        super().__init__()
        self.across_spatial = across_spatial
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1 if channel_shared else channels))

    def forward(self, x):
        dims = tuple(range(1, x.dim())) if self.across_spatial else (1,)
        norm = ((x * x).sum(dims, keepdim=True) + self.eps).sqrt()
        scale = self.weight.reshape((1, -1) + (1,) * (x.dim() - 2))
        return x / norm * scale


class ArgMax(nn.Module):
    """Caffe's ArgMax: the top_k indices (or values, with out_max_val) along `axis`; without an
    axis, over each item's flattened values, shaped N×(1 or 2)×top_k."""

    def __init__(self, top_k=1, out_max_val=False, axis=None):
        super().__init__()
        self.top_k, self.out_max_val, self.axis = top_k, out_max_val, axis

    def forward(self, x):
        if self.axis is not None:
            values, index = x.topk(self.top_k, dim=self.axis)
            return values if self.out_max_val else index.to(x.dtype)
        values, index = x.flatten(1).topk(self.top_k, dim=1)
        index = index.to(x.dtype)
        out = torch.stack((index, values), 1) if self.out_max_val else index[:, None]
        return out.reshape(out.shape + (1,) * max(0, x.dim() - 3))


class Constant(nn.Module):
    """A top that depends on shapes alone (SSD's PriorBox): computed once, held as a buffer."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("value", torch.zeros(shape))


class DetectionOutput(nn.Module):
    """SSD's DetectionOutput, as detection_output_layer.cpp and bbox_util.cpp compute it: boxes
    decoded from the priors, per class the candidates above the confidence threshold (the
    top_k best, ties in prior order), greedy NMS, then the keep_top_k best of the image. The
    output is 1x1xNx7 rows [image, label, score, xmin, ymin, xmax, ymax], by image, label, and
    descending score; an image without detections gives one row [image, -1, ..., -1] when no
    image has any (as Caffe does)."""

    data_dependent = True  # its output's size: torch.export cannot trace it (files.py)

    def __init__(self, num_classes, share_location=True, background=0, nms_threshold=0.3,
                 top_k=-1, eta=1.0, keep_top_k=-1, confidence_threshold=-3.4028234663852886e38,
                 code_type="CORNER", variance_encoded_in_target=False, clip=False):
        super().__init__()
        self.num_classes, self.share_location, self.background = num_classes, share_location, \
            background
        self.nms_threshold, self.top_k, self.eta = nms_threshold, top_k, eta
        self.keep_top_k, self.confidence_threshold = keep_top_k, confidence_threshold
        self.code_type, self.variance_encoded_in_target, self.clip = \
            code_type, variance_encoded_in_target, clip

    def decode(self, loc, prior):
        """loc: N x P x L x 4; prior: 1 x 2 x P*4 -> N x P x L x 4 boxes."""
        boxes, var = prior[0, 0].reshape(-1, 4), prior[0, 1].reshape(-1, 4)
        if self.variance_encoded_in_target:
            var = torch.ones_like(var)
        boxes, var = boxes[None, :, None], var[None, :, None]
        pw, ph = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        if self.code_type == "CORNER":
            out = boxes + var * loc
        elif self.code_type == "CORNER_SIZE":
            out = boxes + var * loc * torch.stack([pw, ph, pw, ph], -1)
        else:  # CENTER_SIZE
            cx = var[..., 0] * loc[..., 0] * pw + (boxes[..., 0] + boxes[..., 2]) / 2
            cy = var[..., 1] * loc[..., 1] * ph + (boxes[..., 1] + boxes[..., 3]) / 2
            w = torch.exp(var[..., 2] * loc[..., 2]) * pw
            h = torch.exp(var[..., 3] * loc[..., 3]) * ph
            out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        return out.clamp(0, 1) if self.clip else out

    @staticmethod
    def overlaps(a, b):
        """Jaccard overlap of each box of a with each of b, as bbox_util's JaccardOverlap: 0
        for boxes apart, else intersection over union -- NaN for two empty boxes that touch,
        which then suppresses (Caffe's `overlap <= threshold` is false)."""
        apart = (b[None, :, 0] > a[:, None, 2]) | (b[None, :, 2] < a[:, None, 0]) | \
            (b[None, :, 1] > a[:, None, 3]) | (b[None, :, 3] < a[:, None, 1])
        inter = (torch.minimum(a[:, None, 2], b[None, :, 2])
                 - torch.maximum(a[:, None, 0], b[None, :, 0])) * \
            (torch.minimum(a[:, None, 3], b[None, :, 3])
             - torch.maximum(a[:, None, 1], b[None, :, 1]))

        def size(x):
            w, h = x[:, 2] - x[:, 0], x[:, 3] - x[:, 1]
            return torch.where((w < 0) | (h < 0), torch.zeros_like(w), w * h)
        union = size(a)[:, None] + size(b)[None, :] - inter
        return torch.where(apart, torch.zeros_like(inter), inter / union)

    def nms(self, boxes, scores):
        """Indices kept by ApplyNMSFast, in the order kept."""
        candidates = torch.nonzero(scores > self.confidence_threshold).flatten()
        order = torch.sort(scores[candidates], descending=True, stable=True).indices
        candidates = candidates[order]
        if self.top_k > -1:
            candidates = candidates[:self.top_k]
        overlap = self.overlaps(boxes[candidates], boxes[candidates])
        if self.eta == 1:  # a fixed threshold: each kept box suppresses the later ones at once
            suppress = ~(overlap <= self.nms_threshold)  # NaN suppresses, as in Caffe
            alive = torch.ones(len(candidates), dtype=torch.bool, device=scores.device)
            for i in range(len(candidates)):
                if alive[i]:
                    alive[i + 1:] &= ~suppress[i, i + 1:]
            return candidates[alive]
        kept: list[int] = []
        threshold = self.nms_threshold
        for i in range(len(candidates)):
            if all(overlap[i, k] <= threshold for k in kept):
                kept.append(i)
                if threshold > 0.5:
                    threshold *= self.eta
        return candidates[kept]

    def forward(self, loc, conf, prior):
        n = loc.shape[0]
        locs = 1 if self.share_location else self.num_classes
        boxes = self.decode(loc.reshape(n, -1, locs, 4), prior)
        conf = conf.reshape(n, -1, self.num_classes)
        rows = []
        for i in range(n):
            found = []  # (score, label, prior index, box)
            for c in range(self.num_classes):
                if c == self.background:
                    continue
                b = boxes[i, :, 0 if self.share_location else c]
                for j in self.nms(b, conf[i, :, c]).tolist():
                    found.append((conf[i, j, c], c, b[j]))
            if self.keep_top_k > -1 and len(found) > self.keep_top_k:
                ranked = sorted(range(len(found)), key=lambda k: -float(found[k][0]))
                found = [found[k] for k in sorted(ranked[:self.keep_top_k])]
            found.sort(key=lambda f: f[1])  # by label; stable: each label's own order stays
            rows += [torch.cat([loc.new_tensor([i, c]), s.reshape(1), box])
                     for s, c, box in found]
        if not rows:
            rows = [loc.new_tensor([i, -1, -1, -1, -1, -1, -1]) for i in range(n)]
        return torch.stack(rows)[None, None]


class ROIPool(nn.Module):
    """Faster R-CNN's ROIPooling, as roi_pooling_layer.cpp computes it: each region's corners
    scaled and rounded half away from zero, its size at least 1, bins of size/pooled (float32)
    from floor(i·bin) to ceil((i+1)·bin), clipped to the map; an empty bin gives 0."""

    data_dependent = True  # its windows come from the values of the regions

    def __init__(self, pooled_h, pooled_w, spatial_scale=1.0):
        super().__init__()
        self.pooled_h, self.pooled_w, self.spatial_scale = pooled_h, pooled_w, spatial_scale

    @staticmethod
    def bins(start, size, pooled, limit):
        step = torch.tensor(size, dtype=torch.float32) / pooled
        k = torch.arange(pooled, dtype=torch.float32)
        lo = torch.floor(k * step).to(torch.int64) + start
        hi = torch.ceil((k + 1) * step).to(torch.int64) + start
        return lo.clamp(0, limit).tolist(), hi.clamp(0, limit).tolist()

    def forward(self, x, rois):
        rois = rois.reshape(-1, 5)
        height, width = x.shape[2], x.shape[3]
        out = x.new_zeros((rois.shape[0], x.shape[1], self.pooled_h, self.pooled_w))
        scaled = (rois[:, 1:].to(torch.float32) * torch.tensor(self.spatial_scale,
                                                               dtype=torch.float32)).double()
        corners = (torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)).to(torch.int64)
        for r, (image, (x1, y1, x2, y2)) in enumerate(zip(rois[:, 0].tolist(),
                                                          corners.tolist())):
            hs, he = self.bins(y1, max(y2 - y1 + 1, 1), self.pooled_h, height)
            ws, we = self.bins(x1, max(x2 - x1 + 1, 1), self.pooled_w, width)
            feature = x[int(image)]
            for i in range(self.pooled_h):
                if he[i] <= hs[i]:
                    continue
                rows = feature[:, hs[i]:he[i]].amax(dim=1)
                for j in range(self.pooled_w):
                    if we[j] > ws[j]:
                        out[r, :, i, j] = rows[:, ws[j]:we[j]].amax(dim=1)
        return out


class PSROIPool(nn.Module):
    """R-FCN's PSROIPooling, as its psroi_pooling_layer.cu computes it: the region's corners
    rounded then scaled (float32), its size at least 0.1, bins of size/group; bin (i, j) of
    output channel d is the mean of its window in input channel (d·group + i)·group + j, 0 when
    empty. Sums come from a float64 summed-area table: every bin at once."""

    def __init__(self, spatial_scale, output_dim, group_size):
        super().__init__()
        self.spatial_scale, self.output_dim, self.group_size = \
            spatial_scale, output_dim, group_size

    def forward(self, x, rois):
        g, d = self.group_size, self.output_dim
        rois = rois.reshape(-1, 5).to(torch.float32)
        v = rois[:, 1:].double()
        corners = (torch.sign(v) * torch.floor(v.abs() + 0.5)).to(torch.float32)
        scale = torch.tensor(self.spatial_scale, dtype=torch.float32)
        x1, y1 = corners[:, 0] * scale, corners[:, 1] * scale
        x2, y2 = (corners[:, 2] + 1) * scale, (corners[:, 3] + 1) * scale
        tenth = torch.tensor(0.1, dtype=torch.float32)
        bin_w = torch.maximum(x2 - x1, tenth) / g
        bin_h = torch.maximum(y2 - y1, tenth) / g
        k = torch.arange(g, dtype=torch.float32, device=x.device)
        height, width = x.shape[2], x.shape[3]

        def edges(start, size, limit):  # R x G
            lo = torch.floor(k[None] * size[:, None] + start[:, None])
            hi = torch.ceil((k[None] + 1) * size[:, None] + start[:, None])
            return lo.clamp(0, limit).long(), hi.clamp(0, limit).long()
        hs, he = edges(y1, bin_h, height)
        ws, we = edges(x1, bin_w, width)
        table = F.pad(x.double(), (1, 0, 1, 0)).cumsum(2).cumsum(3)
        image = rois[:, 0].long()[:, None, None, None]
        step = torch.arange(g, device=x.device)
        c = ((torch.arange(d, device=x.device)[:, None, None] * g + step[:, None]) * g
             + step)[None]
        hs, he = hs[:, None, :, None], he[:, None, :, None]
        ws, we = ws[:, None, None, :], we[:, None, None, :]
        total = table[image, c, he, we] - table[image, c, hs, we] - table[image, c, he, ws] \
            + table[image, c, hs, ws]
        area = (he - hs) * (we - ws)
        mean = total / area.clamp(min=1)
        return torch.where(area > 0, mean, torch.zeros_like(mean)).to(x.dtype)


class MaxPoolMask(nn.MaxPool2d):
    """MAX pooling and Caffe's argmax mask (its second top): each maximum's index within its
    plane (h·W + w, the first of equal values), as floats."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, return_indices=True, **kwargs)

    def forward(self, x):
        values, index = super().forward(x)
        return values, index.to(values.dtype)


class Unpool(nn.Module):
    """SegNet's Upsample: each value written at the index its pooling mask gives, in an
    out_h×out_w plane of zeros."""

    def __init__(self, out_h, out_w):
        super().__init__()
        self.out_h, self.out_w = out_h, out_w

    def forward(self, x, mask):
        n, c = x.shape[:2]
        out = x.new_zeros((n, c, self.out_h * self.out_w))
        out.scatter_(2, mask.reshape(n, c, -1).long(), x.reshape(n, c, -1))
        return out.reshape(n, c, self.out_h, self.out_w)


class Blob(nn.Module):
    """Caffe's Parameter layer: a learned blob that the layer outputs as it is."""

    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape))


def batch_norm_scale(x, bn, scale):
    """A Caffe BatchNorm followed by its Scale, in one kernel: BatchNorm's statistics with the
    Scale layer's factor and bias as the affine part (the same arithmetic as the two layers)."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, scale.weight, scale.bias, False,
                        0.0, bn.eps)
