"""The shared hyperparameter checks on ``Recommender`` (_check_int/_check_number/_check_choice)."""

import math

import numpy as np
import pytest

from musicrec import MusicrecError
from musicrec.models.base import Recommender


class Toy(Recommender):
    name = "toy"

    def __init__(self, x=1):
        self.x = x


def check(method, value, *args, **kwargs):
    getattr(Toy(value), method)("x", *args, **kwargs)


@pytest.mark.parametrize("value", [0, 5, np.int64(0), np.int32(7)])
def test_check_int_accepts_integers_at_or_above_low(value):
    check("_check_int", value, 0)


@pytest.mark.parametrize("value", [True, False, -1, 1.0, "1", None, np.float64(3.0)])
def test_check_int_rejects_bools_non_integers_and_values_below_low(value):
    with pytest.raises(MusicrecError, match=r"^toy: x must be an integer >= 0, got "):
        check("_check_int", value, 0)


def test_check_int_message_names_the_given_value():
    with pytest.raises(MusicrecError) as err:
        check("_check_int", -3, 1)
    assert str(err.value) == "toy: x must be an integer >= 1, got -3"


@pytest.mark.parametrize("value", [0, 0.0, 2.5, np.float64(0.5)])
def test_check_number_closed_low_accepts_the_bound(value):
    check("_check_number", value, low=0)


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf, -math.inf, True, "1", None, np.float32(0.5)])
def test_check_number_rejects_below_low_nan_inf_bool_and_non_numbers(value):
    with pytest.raises(MusicrecError, match=r"^toy: x must be a number >= 0, got "):
        check("_check_number", value, low=0)


def test_check_number_open_low_excludes_the_bound():
    check("_check_number", 1e-9, low=0, low_open=True)
    with pytest.raises(MusicrecError) as err:
        check("_check_number", 0, low=0, low_open=True)
    assert str(err.value) == "toy: x must be a number > 0, got 0"


def test_check_number_interval_open_low_closed_high():
    check("_check_number", 1, low=0, high=1, low_open=True)      # high is inclusive
    check("_check_number", 0.5, low=0, high=1, low_open=True)
    for bad in (0, 1.0001, math.nan):
        with pytest.raises(MusicrecError, match=r"^toy: x must be a number in \(0, 1\], got "):
            check("_check_number", bad, low=0, high=1, low_open=True)


def test_check_number_high_only_and_closed_interval_messages():
    with pytest.raises(MusicrecError, match=r"^toy: x must be a number <= 2, got 3$"):
        check("_check_number", 3, high=2)
    with pytest.raises(MusicrecError, match=r"^toy: x must be a number in \[1, 2\], got 0$"):
        check("_check_number", 0, low=1, high=2)


def test_check_choice_accepts_a_member_of_a_tuple_or_dict():
    check("_check_choice", "b", ("a", "b"))
    check("_check_choice", "b", {"a": 1, "b": 2})


@pytest.mark.parametrize("value", ["c", None, ["a"]])   # ["a"] is unhashable: still a clear error
def test_check_choice_message_lists_the_options(value):
    with pytest.raises(MusicrecError) as err:
        check("_check_choice", value, {"a": 1, "b": 2})
    assert str(err.value) == f"toy: x must be one of a, b, got {value!r}"


def test_models_use_the_checks_at_fit(synthetic):
    from musicrec.models import registry

    cases = [("als", {"factors": True}, "als: factors must be an integer >= 1, got True"),
             ("recently-played", {"decay": 0}, "must be a number in (0, 1], got 0"),
             ("ease", {"l2": math.nan}, "ease: l2 must be a number > 0, got nan")]
    for name, params, msg in cases:
        with pytest.raises(MusicrecError) as err:
            registry.create(name, **params).fit(synthetic)
        assert msg in str(err.value)
