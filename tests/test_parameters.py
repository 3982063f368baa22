"""The shared checks of a parameters cell: every bad value named, with what is allowed."""

import math

import pytest

from course_utils.parameters import Choice, Many, Number, Text, check_parameters

SPECS = dict(SEED=Number(0, integer=True), RATIO=Number(0, 1, open_low=True, open_high=True),
             SEEDS=Many(Number(0, integer=True), none=True), MODEL=Choice("vgg16", "resnet18"),
             NAMES=Many(Text()))
GOOD = dict(SEED=0, RATIO=0.5, SEEDS=None, MODEL="vgg16", NAMES=["L1 norm"])


def test_good_values_pass():
    check_parameters(dict(GOOD), **SPECS)
    check_parameters({**GOOD, "SEEDS": [0, 1]}, **SPECS)


@pytest.mark.parametrize("name, value, message", [
    ("SEED", "abc", "a whole number >= 0"),
    ("SEED", 1.5, "a whole number"),
    ("SEED", True, "a whole number"),
    ("RATIO", 1.0, "< 1"),
    ("RATIO", math.nan, "a finite number"),
    ("RATIO", None, "not None"),
    ("SEEDS", [], "a non-empty list"),
    ("SEEDS", [0, 0], "each once"),
    ("SEEDS", [0, -1], "-1 is not a whole number >= 0"),
    ("SEEDS", 3, "a non-empty list"),
    ("MODEL", "vgg", "one of 'vgg16', 'resnet18'"),
    ("NAMES", [""], "a non-empty string"),
])
def test_a_bad_value_is_named_with_what_is_allowed(name, value, message):
    with pytest.raises(ValueError) as error:
        check_parameters({**GOOD, name: value}, **SPECS)
    assert f"{name} = {value!r}: must be" in str(error.value) and message in str(error.value)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ValueError) as error:
        check_parameters({**GOOD, "SEED": -1, "MODEL": "x"}, **SPECS)
    assert "SEED = -1" in str(error.value) and "MODEL = 'x'" in str(error.value)


def test_a_spec_for_a_missing_parameter_is_a_mistake_in_the_notebook():
    with pytest.raises(NameError, match="no parameter TYPO"):
        check_parameters(GOOD, TYPO=Number())
