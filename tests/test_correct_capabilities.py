"""`correct` reaches a representation's class-head update through declared capabilities
(Relabelable, RelabelerProvider), never through a table of plugin names."""

import pytest

from splatrefine import hookimpl
from splatrefine.corrections.propagate import CorrectOptions, _components
from splatrefine.corrections.runs import RefinedRun
from splatrefine.errors import SplatrefineError
from splatrefine.registry import Registry, make_plugin_manager
from splatrefine.roles import ComponentSpec, RelabelerProvider, Role
from splatrefine.schema import CELEBAMASK_HQ
from splatrefine.testing import FAKE_CONFIG, FakePlugin, FakeRepresentation, FakeRepresentationConfig


class Relabeler:
    def __init__(self, method, prior, seed):
        self.args = (method, prior, seed)

    def relabel(self, model, cameras, labels, weights):
        return model


class ProvidingRepresentation(FakeRepresentation):
    def relabeler(self, method, prior, seed):
        return Relabeler(method, prior, seed)


class _Plugin:
    @hookimpl
    def splatrefine_register_components(self, register):
        register(ComponentSpec(Role.REPRESENTATION, "providing", ProvidingRepresentation, FakeRepresentationConfig,
                               "test: relabels through a helper"))


def _run(tmp_path, representation):
    import yaml

    from splatrefine.config import resolve

    manager = make_plugin_manager(entrypoints=False)
    manager.pm.register(FakePlugin(), name="fakes")
    manager.pm.register(_Plugin(), name="providing")
    registry = Registry(manager)
    data = {**FAKE_CONFIG, "representation": {"plugin": representation}}
    (tmp_path / "config.yaml").write_text(resolve(registry, yaml.safe_load(yaml.safe_dump(data))).dump())
    return RefinedRun(tmp_path, CELEBAMASK_HQ, {"schema": CELEBAMASK_HQ.name, "samples": []}), registry


def test_a_relabeler_provider_gives_the_relabeler_with_the_options(tmp_path):
    run, registry = _run(tmp_path, "providing")
    rep, relabeler, _, name = _components(run, registry, CorrectOptions(method="fit", prior=2.0))
    assert isinstance(rep, RelabelerProvider) and name == "providing"
    assert isinstance(relabeler, Relabeler) and relabeler.args == ("fit", 2.0, 0)


def test_a_representation_without_the_capability_is_one_line(tmp_path):
    run, registry = _run(tmp_path, "fake-representation")
    with pytest.raises(SplatrefineError, match="representation 'fake-representation' cannot update its class head"):
        _components(run, registry, CorrectOptions())
