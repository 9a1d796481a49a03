"""BiSeNet as in the face-parsing.PyTorch project, written for splatrefine.

Module attribute names follow that project's state-dict layout exactly, so its published
checkpoint (79999_iter.pth, CelebAMask-HQ, 19 classes) loads strictly:

    cp.resnet.*            ResNet-18 (conv1, bn1, layer1..layer4 of two basic blocks)
    cp.arm16, cp.arm32     attention refinement modules (conv, conv_atten, bn_atten)
    cp.conv_head16/32      3x3 conv-bn-relu after each upsampling
    cp.conv_avg            1x1 conv-bn-relu on the globally pooled 1/32 feature
    ffm                    feature fusion module (convblk, conv1, conv2)
    conv_out               main head on the fused 1/8 feature
    conv_out16, conv_out32 auxiliary heads on the context features (training only)

Spatial path: face-parsing.PyTorch drops BiSeNet's three-conv spatial path and feeds the ResNet's
1/8 feature (layer2) to the fusion module instead; `spatial_path="resnet"` does the same (and is
what the checkpoint needs). `spatial_path="conv"` builds the paper's separate spatial path (keys
`sp.*`: 7x7/2, 3x3/2, 3x3/2, 1x1 -> 128 channels) for training from scratch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    """conv (no bias) -> batch norm -> relu; keys: conv.weight, bn.*"""

    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        nn.init.kaiming_normal_(self.conv.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block; keys: conv1, bn1, conv2, bn2, downsample.0 (1x1 conv), downsample.1 (bn)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


class ResNet18(nn.Module):
    """The ResNet-18 trunk without its classifier: x -> (1/8 [128], 1/16 [256], 1/32 [512])."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        f8 = self.layer2(self.layer1(x))
        f16 = self.layer3(f8)
        return f8, f16, self.layer4(f16)


class AttentionRefinement(nn.Module):
    """3x3 conv-bn-relu, then a channel attention from the pooled feature (1x1 conv, bn, sigmoid)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3, 1, 1)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)
        nn.init.kaiming_normal_(self.conv_atten.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        weight = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * weight


class ContextPath(nn.Module):
    """ResNet-18 + global context + two ARMs: x -> (1/8 trunk feature, 1/8 context, 1/16 context)."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.resnet(x)
        glob = self.conv_avg(F.adaptive_avg_pool2d(f32, 1))
        c32 = self.arm32(f32) + F.interpolate(glob, size=f32.shape[-2:], mode="nearest")
        c32 = self.conv_head32(F.interpolate(c32, size=f16.shape[-2:], mode="nearest"))  # at 1/16
        c16 = self.arm16(f16) + c32
        c16 = self.conv_head16(F.interpolate(c16, size=f8.shape[-2:], mode="nearest"))  # at 1/8
        return f8, c16, c32


class SpatialPath(nn.Module):
    """BiSeNet's spatial path: three strided convs to 1/8, then 1x1 to 128 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, 2, 3)
        self.conv2 = ConvBNReLU(64, 64, 3, 2, 1)
        self.conv3 = ConvBNReLU(64, 64, 3, 2, 1)
        self.conv_out = ConvBNReLU(64, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusion(nn.Module):
    """Concatenate spatial + context, 1x1 conv-bn-relu, add a squeeze-excitation style reweighting."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1, 1, 0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, a=1)
        nn.init.kaiming_normal_(self.conv2.weight, a=1)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        weight = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat + feat * weight


class Head(nn.Module):
    """3x3 conv-bn-relu then a 1x1 classifier (no bias); keys: conv.*, conv_out.weight."""

    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)
        nn.init.kaiming_normal_(self.conv_out.weight, a=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """x [B,3,H,W] (ImageNet-normalised) -> logits [B,K,H,W]; in training mode also the two
    auxiliary heads' logits: (main, aux16, aux32), all at the input size."""

    def __init__(self, n_classes: int = 19, spatial_path: str = "resnet"):
        super().__init__()
        if spatial_path not in ("resnet", "conv"):
            raise ValueError(f"spatial_path must be 'resnet' or 'conv', got {spatial_path!r}")
        self.cp = ContextPath()
        if spatial_path == "conv":
            self.sp = SpatialPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = Head(256, 256, n_classes)
        self.conv_out16 = Head(128, 64, n_classes)
        self.conv_out32 = Head(128, 64, n_classes)

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        f8, c16, c32 = self.cp(x)
        spatial = self.sp(x) if hasattr(self, "sp") else f8
        if spatial.shape[-2:] != c16.shape[-2:]:
            spatial = F.interpolate(spatial, size=c16.shape[-2:], mode="bilinear", align_corners=True)
        out = F.interpolate(self.conv_out(self.ffm(spatial, c16)), size=size, mode="bilinear", align_corners=True)
        if not self.training:
            return out
        aux16 = F.interpolate(self.conv_out16(c16), size=size, mode="bilinear", align_corners=True)
        aux32 = F.interpolate(self.conv_out32(c32), size=size, mode="bilinear", align_corners=True)
        return out, aux16, aux32
