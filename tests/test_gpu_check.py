"""`make gpu-check` on a machine without CUDA: a clear message and status 2, nothing written."""

import pytest
import torch

from course_utils.harness import gpu_check


def test_without_cuda_it_says_so_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "check.json")]) == 2
    assert "this machine has none" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_its_plan_covers_every_notebook_and_baseline(capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    notebooks = sorted(path.stem for path in gpu_check.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert [line.split(": ")[1] for line in printed if line.startswith("shapes run")] == notebooks
    assert {line.split(": ")[1] for line in printed if line.startswith("paper epoch")} == {
        "alexnet/mnist", "vgg16/cifar10", "resnet18/cifar10", "vgg16_gap/cifar10"}
    assert [line.split(": ")[1] for line in printed if line.startswith("2:4 product")] == ["1024x256", "4096x4096"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="times the paper profile on a CUDA GPU")
def test_one_paper_epoch_is_timed_on_the_gpu():
    result = gpu_check.paper_epoch("alexnet/mnist", torch.device("cuda"))
    assert result["status"] == "ok" and result["images"] >= 50_000 and result["seconds"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="2:4 kernels are a CUDA feature")
def test_a_2_4_product_equals_the_dense_one_on_the_gpu():
    result = gpu_check.semi_structured_product("1024x256", torch.device("cuda"))
    assert result["status"].startswith("refused") or result["max_difference"] < 0.5
