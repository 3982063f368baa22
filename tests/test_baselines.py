"""The smoke profile's baselines must learn: a broken `fit`, recipe or data pipeline fails
here, not silently in notebooks that prune a network knowing nothing. These are the
same cached checkpoints the smoke notebooks then load, so the check costs one training
of each (about 15 s and 30 s on 2 CPU cores)."""

import pytest

from course_utils.profiles import PROFILES
from course_utils.train import baseline, evaluate

FLOORS = [("alexnet", "mnist", 0.90), ("vgg16", "cifar10", 0.35)]


@pytest.mark.parametrize("model_name, dataset, floor", FLOORS, ids=[f[0] for f in FLOORS])
def test_smoke_baselines_reach_their_floors(model_name, dataset, floor):
    dense = baseline(model_name, dataset, PROFILES["smoke"], progress=False)
    accuracy = evaluate(dense.model, dense.test).accuracy
    assert accuracy >= floor, (f"{model_name} on {dense.test.label}: {accuracy:.1%} on "
                               f"{len(dense.test)} test images, below the floor {floor:.0%}")
