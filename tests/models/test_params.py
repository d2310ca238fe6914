"""Each model's hyperparameters are declared once, in its config dataclass: ``__init__``,
``get_params`` and ``set_params`` follow from it."""

from __future__ import annotations

import dataclasses

import pytest

from musicrec import MusicrecError
from musicrec.models import registry
from musicrec.models.base import Recommender, init_from_config


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_params_are_the_config_fields(name):
    cls = registry.model_class(name)
    fields = {f.name: f.default for f in dataclasses.fields(cls.config)}
    assert cls().get_params() == fields
    # every field is a keyword of __init__ and lands on the instance
    changed = {k: v for k, v in fields.items() if isinstance(v, int) and not isinstance(v, bool)}
    model = cls(**{k: v + 1 for k, v in changed.items()})
    assert {k: model.get_params()[k] for k in changed} == {k: v + 1 for k, v in changed.items()}
    with pytest.raises(TypeError):
        cls(no_such_parameter=1)
    with pytest.raises(MusicrecError, match="unknown parameter"):
        cls().set_params(no_such_parameter=1)


def test_a_model_of_ones_own_gets_its_init_from_its_config():
    @dataclasses.dataclass(frozen=True)
    class BaseConfig:
        epochs: int = 5

    @dataclasses.dataclass(frozen=True)
    class MineConfig(BaseConfig):
        alpha: float = 0.5
        epochs: int = 7              # overrides the inherited default, keeps its place

    class Mine(Recommender):
        name = "mine"
        config = MineConfig

    assert list(Mine().get_params().items()) == [("alpha", 0.5), ("epochs", 7)]
    assert Mine(0.1, 3).get_params() == {"alpha": 0.1, "epochs": 3}

    class Plain:
        __init__ = init_from_config(MineConfig)

    assert Plain(alpha=2.0).alpha == 2.0 and Plain().epochs == 7


def test_registering_a_model_of_ones_own(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class NoConfig:
        pass

    class Mine(Recommender):
        name = "mine-too"
        config = NoConfig

    monkeypatch.setitem(registry.MODELS, "mine-too", Mine)
    assert registry.create("mine-too").name == "mine-too"
    with pytest.raises(MusicrecError, match="own name"):
        registry.MODELS["other-name"] = Mine
