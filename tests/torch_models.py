"""PyTorch definitions of jaxconv's models, written from the papers and torchvision's layouts.

The independent references of `tests/test_models_reference.py`: NCHW, float64, `torch.nn`
convolutions, pools and linears, with the lecture's normalizations written out by hand
(Krizhevsky et al.'s LRN as the paper's sum, Jarrett et al.'s LCN as Torch7's
`SpatialContrastiveNormalization`, Sermanet et al.'s Gaussian L2 pool). Nothing here imports
jaxconv.
"""

import torch
from torch import nn
from torch.nn import functional as tF

DT = torch.float64


def lrn(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """Krizhevsky et al. 2012 §3.3: b_i = a_i / (k + alpha sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)}
    a_j^2)^beta over the N maps of a layer."""
    sq, big_n = a * a, a.shape[1]
    sums = [sq[:, max(0, i - n // 2):min(big_n - 1, i + n // 2) + 1].sum(1)
            for i in range(big_n)]
    return a / (k + alpha * torch.stack(sums, 1)) ** beta


def gaussian(size):
    """Torch7's `image.gaussian(size)` (sigma = size/4, centred), normalized to sum 1."""
    g = torch.exp(-0.5 * ((torch.arange(size, dtype=DT) - (size - 1) / 2) / (size / 4)) ** 2)
    g2 = torch.outer(g, g)
    return g2 / g2.sum()


def lcn(x, size, threshold=1e-4):
    """Torch7's SpatialContrastiveNormalization (Jarrett et al. 2009): subtract the Gaussian
    mean over the window and all maps, divide by max(local std, its image mean, threshold);
    zero padding with the border renormalized by the window mass inside the image."""
    c = x.shape[1]
    w = (gaussian(size) / c).expand(1, c, size, size)
    coef = tF.conv2d(torch.ones_like(x[:1]), w, padding=size // 2)
    v = x - tF.conv2d(x, w, padding=size // 2) / coef
    std = torch.sqrt(tF.conv2d(v * v, w, padding=size // 2) / coef)
    mean_std = std.mean(dim=(2, 3), keepdim=True)
    return v / torch.clamp(torch.maximum(std, mean_std), min=threshold)


def gaussian_l2_pool(x, size):
    """Sermanet et al. 2012: sqrt of the Gaussian-weighted sum of squares, stride = window."""
    c = x.shape[1]
    w = gaussian(size).expand(c, 1, size, size)
    return torch.sqrt(tF.conv2d(x * x, w, stride=size, groups=c))


def conv(cin, cout, k, **kw):
    return nn.Conv2d(cin, cout, k, dtype=DT, **kw)


def linear(cin, cout):
    return nn.Linear(cin, cout, dtype=DT)


ACT = {"relu": torch.relu, "tanh": torch.tanh, "tanh_abs": lambda t: torch.tanh(t).abs()}


class TorchLeNet5(nn.Module):
    """LeCun et al. 1998 with full C3, ReLU or tanh, max or average subsampling."""

    def __init__(self, num_classes, pad, act, pool):
        super().__init__()
        self.c1, self.c3 = conv(1, 6, 5, padding=pad), conv(6, 16, 5)
        self.f5, self.f6, self.out = linear(16 * 5 * 5, 120), linear(120, 84), linear(84,
                                                                                  num_classes)
        self.act = ACT[act]
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)

    def forward(self, x):
        x = self.pool(self.act(self.c1(x)))
        x = self.pool(self.act(self.c3(x)))
        x = self.act(self.f5(x.flatten(1)))
        return self.out(self.act(self.f6(x)))


class TorchStageNet(nn.Module):
    """Stages conv (stride 1, same size) -> rectification -> LCN -> pool, hidden FC + ReLU,
    classifier."""

    def __init__(self, num_classes, in_ch, hw, features, kernel, act, lcn_sizes, pools, window,
                 hidden):
        super().__init__()
        self.convs = nn.ModuleList()
        for cout in features:
            self.convs.append(conv(in_ch, cout, kernel, padding=kernel // 2))
            in_ch, hw = cout, hw if pools[len(self.convs) - 1] == "none" else hw // window
        self.fcs = nn.ModuleList()
        width = in_ch * hw * hw
        for size in hidden:
            self.fcs.append(linear(width, size))
            width = size
        self.out = linear(width, num_classes)
        self.act, self.lcn_sizes, self.pools, self.window = ACT[act], lcn_sizes, pools, window

    def forward(self, x):
        for c, size, pool in zip(self.convs, self.lcn_sizes, self.pools):
            x = self.act(c(x))
            x = x if size is None else lcn(x, size)
            if pool == "max":
                x = tF.max_pool2d(x, self.window)
            elif pool == "avg":
                x = tF.avg_pool2d(x, self.window)
            elif pool == "l2":
                x = gaussian_l2_pool(x, self.window)
        x = x.flatten(1)
        for fc in self.fcs:
            x = torch.relu(fc(x))
        return self.out(x)


class TorchAlexNetTwoTowers(nn.Module):
    """The paper's Figure 2: two towers of 48-128-192-192-128 maps; conv3 and the FCs see both
    towers, conv2/4/5 only their own; LRN (n=5, k=2, alpha=1e-4, beta=0.75) over the N maps of
    conv1 and conv2 after ReLU; overlapping 3x3/2 max pools after LRN1, LRN2 and conv5.

    The LRN window runs over all N maps of the layer, both towers' (§3.3: "N is the total
    number of kernels in the layer"), as `jaxconv.models.AlexNet` does; an LRN within each
    tower would differ at the two maps either side of the tower boundary."""

    def __init__(self, num_classes, lrn_size=5):
        super().__init__()
        for t in "ab":
            setattr(self, f"conv1{t}", conv(3, 48, 11, stride=4))
            setattr(self, f"conv2{t}", conv(48, 128, 5, padding=2))
            setattr(self, f"conv3{t}", conv(256, 192, 3, padding=1))
            setattr(self, f"conv4{t}", conv(192, 192, 3, padding=1))
            setattr(self, f"conv5{t}", conv(192, 128, 3, padding=1))
        self.fc6, self.fc7 = linear(256 * 6 * 6, 4096), linear(4096, 4096)
        self.fc8, self.lrn_size = linear(4096, num_classes), lrn_size

    def forward(self, x):
        def towers(name, a, b):
            return (torch.relu(getattr(self, f"{name}a")(a)),
                    torch.relu(getattr(self, f"{name}b")(b)))

        pool = nn.MaxPool2d(3, 2)
        a, b = towers("conv1", x, x)
        both = pool(lrn(torch.cat([a, b], 1), self.lrn_size))
        a, b = towers("conv2", both[:, :48], both[:, 48:])
        both = pool(lrn(torch.cat([a, b], 1), self.lrn_size))
        a, b = towers("conv3", both, both)
        a, b = towers("conv4", a, b)
        a, b = towers("conv5", a, b)
        x = pool(torch.cat([a, b], 1)).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))


class TorchAlexNetOneTower(nn.Module):
    """torchvision.models.alexnet (Krizhevsky 2014): 64-192-384-256-256, no LRN, adaptive 6x6."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.conv2 = conv(3, 64, 11, stride=4, padding=2), conv(64, 192, 5, padding=2)
        self.conv3, self.conv4 = conv(192, 384, 3, padding=1), conv(384, 256, 3, padding=1)
        self.conv5 = conv(256, 256, 3, padding=1)
        self.fc6, self.fc7 = linear(256 * 6 * 6, 4096), linear(4096, 4096)
        self.fc8 = linear(4096, num_classes)

    def forward(self, x):
        pool = nn.MaxPool2d(3, 2)
        x = pool(torch.relu(self.conv1(x)))
        x = pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.conv4(torch.relu(self.conv3(x))))
        x = nn.AdaptiveAvgPool2d(6)(pool(torch.relu(self.conv5(x)))).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))


class TorchVGG(nn.Module):
    """torchvision's VGG without batch norm: stages of 3x3 pad-1 conv + ReLU closed by a 2x2
    max pool (Simonyan & Zisserman Table 1: A = 1,1,2,2,2 convs, D = 2,2,3,3,3), adaptive 7x7
    average pool, FC-ReLU-FC-ReLU-FC."""

    def __init__(self, num_classes, convs_per_stage, channels, hidden):
        super().__init__()
        self.stages, cin = nn.ModuleList(), 3
        for n, cout in zip(convs_per_stage, channels):
            self.stages.append(nn.ModuleList(conv(cin if i == 0 else cout, cout, 3, padding=1)
                                             for i in range(n)))
            cin = cout
        self.fc6, self.fc7 = linear(cin * 49, hidden), linear(hidden, hidden)
        self.fc8 = linear(hidden, num_classes)

    def forward(self, x):
        for stage in self.stages:
            for c in stage:
                x = torch.relu(c(x))
            x = tF.max_pool2d(x, 2)
        x = nn.AdaptiveAvgPool2d(7)(x).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))
