"""ComponentContext.component: the one way to build a component by role + name + settings."""

import pytest

from splatrefine.errors import ConfigError, PluginError
from splatrefine.roles import ComponentContext, Role
from splatrefine.testing import FakeSampler, FakeSamplerConfig


def test_builds_from_params_or_settings_with_its_own_context(fake_registry):
    ctx = ComponentContext(device="cpu", seed=7, registry=fake_registry)
    a = ctx.component(Role.VIEW_SAMPLER, "fake-sampler", {"count": 3})
    b = ctx.component("view_sampler", "fake-sampler", FakeSamplerConfig(count=5))
    c = ctx.component(Role.VIEW_SAMPLER, "fake-sampler")
    assert isinstance(a, FakeSampler) and (a.config.count, b.config.count, c.config.count) == (3, 5, 4)
    assert ctx.build(Role.VIEW_SAMPLER, "fake-sampler", {"count": 2}).config.count == 2  # the older spelling


def test_bad_names_and_settings_are_user_errors(fake_registry):
    ctx = ComponentContext(registry=fake_registry)
    with pytest.raises(PluginError, match="no view_sampler named 'fake-smpler'. Did you mean 'fake-sampler'"):
        ctx.component(Role.VIEW_SAMPLER, "fake-smpler", {})
    with pytest.raises(ConfigError, match=r"view_sampler 'fake-sampler' has no setting 'cont'"):
        ctx.component(Role.VIEW_SAMPLER, "fake-sampler", {"cont": 3})
    with pytest.raises(ConfigError, match=r"^parser.json.count: expected an integer"):
        ctx.component(Role.VIEW_SAMPLER, "fake-sampler", {"count": "x"}, where="parser.json")
    with pytest.raises(TypeError, match="takes FakeSamplerConfig settings"):
        ctx.component(Role.VIEW_SAMPLER, "fake-sampler", object())


def test_a_custom_builder_sees_every_params_build():
    seen = []
    ctx = ComponentContext(build=lambda role, name, params: seen.append((role, name, params)) or "built")
    assert ctx.component(Role.LABEL_AGGREGATOR, "argmax", {"min_confidence": 0.5}) == "built"
    assert seen == [(Role.LABEL_AGGREGATOR, "argmax", {"min_confidence": 0.5})]


def test_cleanup_builds_its_base_through_the_engine_context(fake_registry):
    from splatrefine.plugins.aggregators.cleanup import CleanupAggregator, CleanupConfig
    from splatrefine.testing import FakeAggregator

    # the fake registry's aggregator is only reachable through the context's registry
    agg = CleanupAggregator(CleanupConfig(base="fake-aggregator"), ComponentContext(registry=fake_registry))
    assert isinstance(agg.base, FakeAggregator)
