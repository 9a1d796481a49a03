"""The `bisenet` parser: BiSeNet behind splatrefine's trainable-parser contract (TorchParser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from splatrefine.training import ParserOptions, TorchParser, TrainOptions


@dataclass(frozen=True)
class BiSeNetModelOptions:
    spatial_path: str = field(default="resnet", metadata={
        "help": "resnet: the ResNet's 1/8 feature as in face-parsing.PyTorch (its checkpoint needs this); "
                "conv: a separate three-conv spatial path", "choices": ("resnet", "conv")})


@dataclass(frozen=True)
class BiSeNetConfig(TrainOptions, ParserOptions, BiSeNetModelOptions):
    """bisenet settings: model, then loading/inference, then training."""


class BiSeNetParser(TorchParser):
    """BiSeNet (ImageNet mean/std inputs at input_size x input_size, 19 CelebAMask-HQ classes by
    default). Without `checkpoint` the weights are randomly initialised: nothing is downloaded."""

    plugin = "bisenet"

    def __init__(self, config: BiSeNetConfig, context: Any):
        super().__init__(config, context)

    def build_net(self):
        from .network import BiSeNet

        return BiSeNet(self.num_classes, self.config.spatial_path)

    def forward_train(self, x):
        return list(self.net(x))

    def forward_eval(self, x):
        return self.net(x)

    def describe(self) -> str:
        return f"BiSeNet ({self.num_classes} classes, spatial_path={self.config.spatial_path})"
