"""The `smp` parser: a segmentation-models-pytorch model behind the TorchParser contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from splatrefine.errors import ConfigError, PluginError, did_you_mean
from splatrefine.training import ParserOptions, TorchParser, TrainOptions

INSTALL_HINT = ("Install it with pip install 'splatrefine[smp]' (it needs torchvision built for your torch: "
                "see docs/parsers.md).")


@dataclass(frozen=True)
class SmpModelOptions:
    arch: str = field(default="Unet", metadata={
        "help": "smp architecture: Unet, UnetPlusPlus, FPN, DeepLabV3Plus, Linknet, PSPNet, PAN, MAnet, ..."})
    encoder: str = field(default="resnet18", metadata={
        "help": "smp encoder (resnet18, mobilenet_v2, efficientnet-b0, ...) or tu-<timm model>"})
    encoder_weights: str | None = field(default=None, metadata={
        "help": "pretrained encoder weights smp would download (e.g. imagenet); null = random init, nothing downloads"})


@dataclass(frozen=True)
class SmpConfig(TrainOptions, ParserOptions, SmpModelOptions):
    """smp settings: model, then loading/inference, then training."""

    def validate(self) -> None:
        if self.input_size % 32:
            raise ConfigError(f"input_size {self.input_size} is not a multiple of 32 (smp encoders downsample by 32)")


def import_smp():
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise PluginError(f"the smp parser needs segmentation-models-pytorch ({exc})", INSTALL_HINT) from None
    return smp


def architectures(smp) -> dict[str, type]:
    """lower-case name -> model class, from smp's own table."""
    return {k.lower(): v for k, v in smp.MODEL_ARCHITECTURES_MAPPING.items()}


def check_names(smp, arch: str, encoder: str, where: str = "smp") -> type:
    """The model class for `arch`, after checking `encoder` exists; ConfigError with a
    did-you-mean otherwise (never smp's dump of every name)."""
    archs = architectures(smp)
    cls = archs.get(arch.lower())
    if cls is None:
        names = [c.__name__ for c in archs.values()]
        raise ConfigError(f"{where}: unknown architecture '{arch}'.{did_you_mean(arch, names)}",
                          f"Architectures: {', '.join(names)}.")
    if encoder.startswith("tu-"):
        import timm

        timm_names = timm.list_models()
        if encoder[3:] not in timm_names:
            close = did_you_mean(encoder, [f"tu-{n}" for n in timm_names])
            raise ConfigError(f"{where}: unknown timm encoder '{encoder}'.{close}",
                              "timm encoders are written tu-<name>, with <name> from timm.list_models().")
        return cls
    names = list(smp.encoders.get_encoder_names())
    if encoder not in names:
        raise ConfigError(f"{where}: unknown encoder '{encoder}'.{did_you_mean(encoder, names)}",
                          "Any timm model also works as tu-<name>; smp.encoders.get_encoder_names() lists the rest.")
    return cls


class SmpParser(TorchParser):
    """A segmentation-models-pytorch model: input_size must be a multiple of 32."""

    plugin = "smp"

    def __init__(self, config: SmpConfig, context: Any):
        self.smp = import_smp()
        self.model_cls = check_names(self.smp, config.arch, config.encoder)
        if config.input_size % 32:
            raise ConfigError(f"smp: input_size {config.input_size} is not a multiple of 32 (smp encoders downsample by 32)")
        super().__init__(config, context)

    def build_net(self):
        try:
            return self.model_cls(encoder_name=self.config.encoder, encoder_weights=self.config.encoder_weights,
                                  in_channels=3, classes=self.num_classes)
        except Exception as exc:  # noqa: BLE001 - smp raises assorted errors for bad combinations
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            hint = ("encoder_weights needs a download; use null and load weights with 'checkpoint'."
                    if self.config.encoder_weights else None)
            raise ConfigError(f"smp: cannot build {self.config.arch} with encoder {self.config.encoder}: {first}",
                              hint) from None

    def describe(self) -> str:
        return f"smp {self.config.arch}/{self.config.encoder} ({self.num_classes} classes)"
