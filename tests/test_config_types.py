"""`coerce`/`build_settings` are strict for every annotation a settings dataclass may use: a bad
value is one ConfigError line naming the key, the bad value, the expected type and the fix."""

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from splatrefine.config import build_settings, settings_to_dict
from splatrefine.errors import ConfigError


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@dataclass(frozen=True)
class Inner:
    every: int = 100
    scale: float = 1.0


@dataclass(frozen=True)
class Settings:
    count: int = 4
    weights: Path | None = None
    out: Path = Path("out")
    yaw: tuple[float, float] = (-90.0, 90.0)
    ids: tuple[int, ...] = (1, 2)
    mode: Mode = Mode.FAST
    kind: Literal["a", "b"] = "a"
    loss: str = field(default="ce", metadata={"choices": ("ce", "kl")})
    densify: Inner = field(default_factory=lambda: Inner(every=50))
    workers: int | Literal["auto"] = "auto"


def build(**params):
    return build_settings(Settings, params, "representation 'x'")


def error(**params) -> str:
    with pytest.raises(ConfigError) as exc:
        build(**params)
    assert exc.value.hint is None  # one line
    return exc.value.message


def test_good_values_are_converted():
    s = build(weights="w.pth", out="o", yaw=[-30, 30], ids=[3], mode="exact", kind="b", loss="kl",
              densify={"scale": 2}, workers=3)
    assert s.weights == Path("w.pth") and s.out == Path("o")
    assert s.yaw == (-30.0, 30.0) and s.ids == (3,)
    assert s.mode is Mode.EXACT and build(mode="EXACT").mode is Mode.EXACT
    assert s.densify == Inner(every=50, scale=2.0)  # only the written key changes the field's default
    assert s.workers == 3 and build(workers="auto").workers == "auto"


def test_round_trips_through_plain_data():
    s = build(weights="w.pth", mode="exact", densify={"every": 7})
    data = settings_to_dict(s)
    assert data["mode"] == "exact" and data["weights"] == "w.pth" and data["densify"] == {"every": 7, "scale": 1.0}
    assert build(**data) == s


@pytest.mark.parametrize("params, line", [
    ({"count": "abc"}, "representation 'x'.count: expected an integer, got 'abc'; write a whole number, e.g. 3"),
    ({"weights": 3}, "representation 'x'.weights: expected a path, got 3; write the path as a string, e.g. weights/model.pth"),
    ({"out": ""}, "representation 'x'.out: expected a path, got ''; write the path as a string, e.g. weights/model.pth"),
    ({"yaw": 5}, "representation 'x'.yaw: expected a list of 2 numbers, got 5; write a list, e.g. [0.5, 0.5]"),
    ({"yaw": [1, 2, 3]}, "representation 'x'.yaw: expected a list of 2 numbers, got [1, 2, 3]; write 2 values, e.g. [0.5, 0.5]"),
    ({"yaw": [1, "x"]}, "representation 'x'.yaw[1]: expected a number, got 'x'; write a number, e.g. 0.5"),
    ({"ids": ["a"]}, "representation 'x'.ids[0]: expected an integer, got 'a'; write a whole number, e.g. 3"),
    ({"mode": "fats"}, "representation 'x'.mode: 'fats' is not one of fast, exact. Did you mean 'fast'?"),
    ({"mode": 3}, "representation 'x'.mode: 3 is not one of fast, exact. Write one of them exactly."),
    ({"kind": "c"}, "representation 'x'.kind: 'c' is not one of a, b. Write one of them exactly."),
    ({"loss": "kll"}, "representation 'x'.loss: 'kll' is not one of ce, kl. Did you mean 'kl'?"),
    ({"densify": 5}, "representation 'x'.densify: expected a mapping of Inner settings (every, scale), got 5; "
                     "write it as a mapping, e.g. {every: ..., scale: ...}"),
    ({"densify": {"every": "often"}}, "representation 'x'.densify.every: expected an integer, got 'often'; "
                                      "write a whole number, e.g. 3"),
    ({"workers": "two"}, "representation 'x'.workers: expected an integer or one of auto, got 'two'; write e.g. 3"),
    ({"count": "1e-3"}, "representation 'x'.count: expected an integer, got '1e-3'; write a whole number, e.g. 3"),
])
def test_a_bad_value_is_one_line_naming_key_value_type_and_fix(params, line):
    assert error(**params) == line


def test_yaml_float_text_gets_its_fix():
    @dataclass(frozen=True)
    class Lr:
        lr: float = 0.1

    with pytest.raises(ConfigError, match=r"Lr.lr: expected a number, got '1e-3'; YAML reads 1e-3 as text: write 0.001"):
        build_settings(Lr, {"lr": "1e-3"}, "Lr")


def test_nested_unknown_key_names_the_group():
    with pytest.raises(ConfigError, match=r"representation 'x'.densify has no setting 'evry'. Did you mean 'every'"):
        build(densify={"evry": 3})


def test_an_unsupported_annotation_is_refused_not_passed_through():
    @dataclass(frozen=True)
    class Odd:
        points: set = frozenset()

    with pytest.raises(ConfigError, match=r"Odd.points: expected a set, got \[1\]; give a set"):
        build_settings(Odd, {"points": [1]}, "Odd")


def test_set_with_a_deeper_key_on_a_plain_setting(fake_registry):
    from splatrefine.config import resolve_components
    from splatrefine.roles import Role

    with pytest.raises(ConfigError, match=r"view_sampler 'fake-sampler'.count: expected an integer, got \{'x': 1\}"):
        resolve_components(fake_registry, {}, ["view_sampler=fake-sampler"], ["view_sampler.count.x=1"],
                           roles=(Role.VIEW_SAMPLER,))


def test_resolve_components_for_one_role_ignores_other_blocks(fake_registry):
    from splatrefine.config import resolve_components
    from splatrefine.roles import Role

    data = {"seed": 3, "representation": {"plugin": "nope"}, "view_sampler": {"params": {"count": 6}}}
    got = resolve_components(fake_registry, data, ["fake-sampler"], ["view_sampler.count=7"],
                             roles=(Role.VIEW_SAMPLER,), defaults={Role.VIEW_SAMPLER: "fake-sampler"})
    assert got.plugins == {Role.VIEW_SAMPLER: "fake-sampler"} and got.settings[Role.VIEW_SAMPLER].count == 7
    with pytest.raises(ConfigError, match="--set representation.x=1: this command uses only view_sampler settings"):
        resolve_components(fake_registry, {}, [], ["representation.x=1"], roles=(Role.VIEW_SAMPLER,),
                           defaults={Role.VIEW_SAMPLER: "fake-sampler"})
    with pytest.raises(ConfigError, match="--set count=1: expected view_sampler.KEY=VALUE"):
        resolve_components(fake_registry, {}, [], ["count=1"], roles=(Role.VIEW_SAMPLER,),
                           defaults={Role.VIEW_SAMPLER: "fake-sampler"})
