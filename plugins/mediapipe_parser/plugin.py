"""Registers `mediapipe` as an initial parser. Cheap to import: mediapipe is imported when the
component is built (a missing mediapipe is a PluginError then, not at listing)."""

from __future__ import annotations

from splatrefine import hookimpl
from splatrefine.roles import ComponentSpec, Requirements, Role

from .parser import INSTALL_COMMAND, MediaPipeConfig


def make_mediapipe(config: MediaPipeConfig, context):
    from .parser import MediaPipeParser

    return MediaPipeParser(config, context)


@hookimpl
def splatrefine_register_components(register):
    register(ComponentSpec(Role.INITIAL_PARSER, "mediapipe", make_mediapipe, MediaPipeConfig,
                           summary="MediaPipe face-mesh regions (skin, brows, eyes, nose, lips, mouth; extra 'mediapipe')",
                           requires=Requirements(modules=("mediapipe",), install=INSTALL_COMMAND)))
