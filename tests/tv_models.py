"""torchvision's ResNet family written out in plain torch, with its module names (so its
state_dict keys are torchvision's: conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, fc...),
following torchvision.models.resnet (v1.5: the stride on the 3×3 of a bottleneck); and real
torchvision (`import_torchvision`), against which test_torchvision_import checks both this
transcription and the imported weights."""
import functools
import importlib.util
from pathlib import Path

import torch
from torch import nn

# PyPI's torchvision wheels are built against CUDA torch: beside a CPU torch their C++ ops
# (_C.so) do not load, and the package's import then stops where it registers fake kernels
# for two of those ops. The models are plain Python and use none of them.
MISSING_OPS = ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
               "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_DECLARED = []  # the declarations live as long as their Library object


@functools.lru_cache(None)
def import_torchvision():
    """The torchvision package, or None where it is not installed. Where its C++ ops do not
    load, the schemas of the two ops its import registers kernels for are declared first."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    libraries = sorted(Path(spec.origin).parent.glob("_C*.so"))
    try:
        torch.ops.load_library(str(libraries[0]))
    except (IndexError, OSError, RuntimeError):
        library = torch.library.Library("torchvision", "FRAGMENT")
        _DECLARED.append(library)
        for schema in MISSING_OPS:
            try:
                library.define(schema)
            except RuntimeError:  # declared already
                pass
    import torchvision
    return torchvision


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample, groups, base_width, msra=False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample, groups, base_width, msra=False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        # MSRA's release strides the first 1×1; torchvision (v1.5) the 3×3
        self.conv1 = nn.Conv2d(cin, width, 1, stride if msra else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1 if msra else stride, 1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """torchvision's ResNet; msra=True: the same modules in the layout of MSRA's Caffe release
    of ResNet-50 (stride on the first 1×1, conv1 with a bias, max pooling unpadded and
    rounded up), which benchmarks/torch_inference.py compares with."""

    def __init__(self, block, layers, groups=1, width_per_group=64, num_classes=1000,
                 msra=False):
        super().__init__()
        self.cin, self.groups, self.base_width, self.msra = 64, groups, width_per_group, msra
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=msra)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True) if msra else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(block, 64, layers[0], 1)
        self.layer2 = self._stage(block, 128, layers[1], 2)
        self.layer3 = self._stage(block, 256, layers[2], 2)
        self.layer4 = self._stage(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _stage(self, block, planes, units, stride):
        downsample = None
        if stride != 1 or self.cin != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.cin, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(self.cin, planes, stride, downsample, self.groups, self.base_width,
                        self.msra)]
        self.cin = planes * block.expansion
        blocks += [block(self.cin, planes, 1, None, self.groups, self.base_width, self.msra)
                   for _ in range(1, units)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


MODELS = {  # our built-in model -> torchvision's constructor arguments
    "resnet18_tv": (Basic, [2, 2, 2, 2], {}),
    "resnet34_tv": (Basic, [3, 4, 6, 3], {}),
    "resnet50_tv": (Bottleneck, [3, 4, 6, 3], {}),
    "resnet101_tv": (Bottleneck, [3, 4, 23, 3], {}),
    "resnet152_tv": (Bottleneck, [3, 8, 36, 3], {}),
    "resnext50_32x4d": (Bottleneck, [3, 4, 6, 3], {"groups": 32, "width_per_group": 4}),
    "resnext101_32x8d": (Bottleneck, [3, 4, 23, 3], {"groups": 32, "width_per_group": 8}),
    "wide_resnet50_2": (Bottleneck, [3, 4, 6, 3], {"width_per_group": 128}),
    "wide_resnet101_2": (Bottleneck, [3, 4, 23, 3], {"width_per_group": 128}),
}


def torchvision_model(name, seed=0, real=False):
    """The model in eval mode: torchvision's initialization (He normal, fan_out, for the
    convolutions), then BatchNorm given statistics and affine parameters of a trained net's
    scale, so that every BatchNorm matters. real=True: built by torchvision itself (None
    where torchvision is not installed; its weights differ from the transcription's, as its
    modules draw their default initializations in another order)."""
    torch.manual_seed(seed)
    if real:
        torchvision = import_torchvision()
        if torchvision is None:
            return None
        model = getattr(torchvision.models, name.removesuffix("_tv"))()
    else:
        block, layers, kwargs = MODELS[name]
        model = ResNet(block, layers, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c) * 0.1)
            m.running_var.copy_(torch.rand(c) + 0.5)
            with torch.no_grad():
                m.weight.copy_(1 + 0.1 * torch.randn(c))
                m.bias.copy_(0.1 * torch.randn(c))
    return model.eval()
