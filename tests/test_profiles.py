import pytest
import torch

from course_utils.profiles import PROFILES, Profile, get_profile


def test_named_profiles_resolve_to_themselves():
    for name in ("smoke", "quick", "paper"):
        assert get_profile(name).name == name


def test_smoke_is_the_smallest_and_paper_the_full_run():
    smoke, quick, paper = PROFILES["smoke"], PROFILES["quick"], PROFILES["paper"]
    assert smoke.train_size < quick.train_size and paper.train_size is None
    assert smoke.width <= quick.width <= paper.width == 1.0
    assert smoke.epochs <= quick.epochs <= paper.epochs


def test_auto_picks_by_device_and_the_environment_overrides_it(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert get_profile().name == ("paper" if torch.cuda.is_available() else "quick")
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert get_profile("auto").name == "smoke"
    assert get_profile("paper").name == "paper"  # an explicit choice wins


@pytest.mark.parametrize("bad", ["fast", "", "SMOKE"])
def test_unknown_profile_names_what_is_allowed(bad, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    with pytest.raises(ValueError, match="smoke, shapes, quick, paper"):
        get_profile(bad)


def test_a_bad_environment_value_is_reported(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "tiny")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        get_profile()


def test_the_shapes_profile_has_the_papers_widths_on_few_images():
    shapes, paper = PROFILES["shapes"], PROFILES["paper"]
    assert shapes.width == paper.width and shapes.batch_size == paper.batch_size
    assert shapes.brief and shapes.train_size <= 256 and shapes.epochs == 1


def test_a_profile_whose_notebook_images_exceed_its_baselines_is_refused():
    from dataclasses import replace

    with pytest.raises(ValueError, match="train_size <= baseline_train_size"):
        replace(PROFILES["smoke"], train_size=10_000)


def test_a_dataset_specific_epoch_count_comes_before_the_models():
    profile = Profile("x", train_size=10, baseline_train_size=10, test_size=10, calibration_size=1, width=0.25,
                      epochs=4, finetune_epochs=1, batch_size=8, seeds=(0,),
                      baseline_epochs=(("alexnet/mnist", 8), ("alexnet", 6)))
    assert profile.epochs_for("alexnet", "mnist") == 8
    assert profile.epochs_for("alexnet", "cifar10") == 6
    assert profile.epochs_for("vgg16", "mnist") == 4
