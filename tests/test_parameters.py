"""The shared checks of a parameters cell: every bad value named, with what is allowed."""

import math
from pathlib import Path
from unittest.mock import patch

import nbformat
import papermill
import pytest

from course_utils import parameters
from course_utils.parameters import COMMON, Choice, Many, Named, Number, Text, check_parameters

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))

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


@pytest.mark.parametrize("name, value, message", [
    ("PROFILE", ["smoke"], "one of 'auto', 'smoke'"),
    ("RESULTS_FILE", "", "a non-empty string (or None)"),
    ("RESULTS_FILE", 123, "a non-empty string (or None)"),
    ("DEVICE", "gpu", "one of 'cuda', 'mps', 'cpu'"),
    ("SEED", 10**400, "a whole number >= 0 and <= 4,294,967,295"),
])
def test_the_parameters_every_notebook_has_are_checked_without_a_spec(name, value, message):
    common = dict(PROFILE="smoke", DEVICE=None, SEED=0, RESULTS_FILE=None)
    with pytest.raises(ValueError) as error:
        check_parameters({**common, name: value})
    assert f"{name} = " in str(error.value) and message in str(error.value)


@pytest.mark.parametrize("value", [{}, {"fast": (2,)}, {"fast": (0, 5)}, {"fast": (2.5, 5)}, {"": (2, 5)}, [(2, 5)]])
def test_a_table_of_named_pairs_refuses_what_would_fail_late(value):
    with pytest.raises(ValueError, match="a non-empty dict of names"):
        check_parameters({"SCHEDULES": value}, SCHEDULES=Named(Many(Number(1, 50, integer=True), length=2, unique=False)))


def notebook_specs(notebook: Path) -> dict:
    """The specs a notebook checks its parameters against: its parameters cell and the cell that
    calls check_parameters, run with a stand-in that records them and stops the cell there."""
    class Recorded(Exception):
        pass

    recorded = {}

    def record(namespace, **specs):
        recorded.update({name: spec for name, spec in COMMON.items() if name in namespace}, **specs)
        raise Recorded

    cells = nbformat.read(notebook, as_version=4).cells
    namespace = {}
    exec(next(c.source for c in cells if "parameters" in c.metadata.get("tags", [])), namespace)
    with patch.object(parameters, "check_parameters", record), pytest.raises(Recorded):
        exec(next(c.source for c in cells if "check_parameters(globals()" in c.source), namespace)
    return recorded


def unbounded(spec) -> bool:
    if isinstance(spec, (Many, Named)):
        return unbounded(spec.item)
    return isinstance(spec, Number) and (spec.low is None or spec.high is None)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_parameter_of_every_notebook_is_checked_within_bounds_a_laptop_can_meet(notebook):
    specs = notebook_specs(notebook)
    names = set(papermill.inspect_notebook(str(notebook)))
    assert names <= set(specs), f"parameters without a check: {sorted(names - set(specs))}"
    assert not [name for name, spec in specs.items() if unbounded(spec)], "every number needs both bounds"
