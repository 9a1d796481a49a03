"""Every registered component (builtins, and the example third-party plugin when installed)
satisfies its role's Protocol: the names (runtime_checkable isinstance) and the parameters the
core passes (signature inspection), and every optional capability it declares."""

import importlib.util
from pathlib import Path

import pytest

from splatrefine.registry import Registry
from splatrefine.roles import CAPABILITIES, PROTOCOLS, Representation, Role, TargetParser, protocol_problems

# settings a component cannot be built without (besides its defaults)
REQUIRED = {(Role.INITIAL_PARSER, "labels"): lambda tmp: {"path": str(tmp)}}


@pytest.fixture(scope="module")
def registry():
    return Registry()


def _specs():
    return [(s.role, s.name) for s in Registry().specs()]


@pytest.mark.parametrize("role, name", _specs(), ids=lambda v: str(v))
def test_every_component_satisfies_its_role(registry, role, name, tmp_path):
    params = REQUIRED.get((role, name), lambda tmp: {})(tmp_path)
    component = registry.context().component(role, name, params)
    protocol = PROTOCOLS[role]
    assert isinstance(component, protocol), f"{role.value} '{name}' is not a {protocol.__name__}"
    assert protocol_problems(component, protocol) == []
    for capability in CAPABILITIES[role]:
        if isinstance(component, capability):
            assert protocol_problems(component, capability) == [], capability.__name__


def test_the_example_third_party_plugin_is_checked_when_installed():
    if importlib.util.find_spec("splatrefine_spiral") is None:
        pytest.skip("examples/third_party_plugin is not installed")
    assert (Role.VIEW_SAMPLER, "spiral") in _specs()


def test_signature_inspection_finds_what_isinstance_cannot():
    class NoResume:
        schema = None

        def predict(self, images): ...
        def predict_numpy(self, images): ...
        def parse(self, capture): ...
        def fit(self, dataset, workdir=None): ...
        def save(self, path): ...
        def load(self, path, strict): ...

    parser = NoResume()
    assert isinstance(parser, TargetParser)  # the names are all there
    assert protocol_problems(parser, TargetParser) == [
        "fit() has no parameter 'resume'", "fit() takes no **overrides",
        "load() requires strict, which the core never passes"]

    class Rep:
        def fit(self, capture, probs, workdir): ...
        def render(self, model, cameras): ...
        def save(self, model, path): ...
        def load(self, path): ...

    assert protocol_problems(Rep(), Representation) == [
        "fit() has no parameter 'initial_probs'", "fit() requires 'workdir', which the protocol makes optional",
        "fit() requires probs, which the core never passes"]


def test_protocols_are_what_the_core_calls():
    """No probing of components in the core: optional methods are reached through a declared
    capability (isinstance), never hasattr/getattr."""
    root = Path(__file__).resolve().parents[1] / "core"
    probes = []
    for path in [root / "engine.py", root / "commands" / "parsers.py", root / "corrections" / "propagate.py"]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if any(f'"{m}"' in line for m in ("export_ply", "predict_numpy", "notes", "schema", "observe", "relabel")) \
                    and ("getattr" in line or "hasattr" in line):
                probes.append(f"{path.name}:{i}: {line.strip()}")
    assert probes == []
