"""A pruned model exported to ONNX computes what it computed in PyTorch, at any batch size."""

import copy

import pytest
import torch

from course_utils.graph import ModelGraph
from course_utils.plans import group_scores, lowest
from course_utils.scores import l1_norm
from course_utils.export import export_onnx, onnx_difference, onnx_latency, onnx_session
from course_utils.models import build_model
from course_utils.surgery import remove_filters

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
def test_a_pruned_model_runs_under_onnxruntime_as_in_pytorch(tmp_path, name):
    torch.manual_seed(0)
    model, x = build_model(name, 0.25).eval(), torch.randn(1, 3, 32, 32)
    remove_filters(model, x, lowest(group_scores(ModelGraph(model, x), l1_norm(model)), 0.4))
    session = onnx_session(export_onnx(model, x, tmp_path / "pruned.onnx"), threads=1)
    assert onnx_difference(model, session, x) < 1e-4
    assert [i.shape[1:] for i in session.get_inputs()] == [[3, 32, 32]]
    latency = onnx_latency(session, x, batch_size=4, repeats=3, min_run_time=0.05)
    assert 0 < latency.median < 1 and latency.threads == 1 and latency.batch_size == 4 and len(latency.repeats) == 3
    other = copy.deepcopy(model)
    with torch.no_grad():
        list(other.parameters())[-1].add_(1)  # the classifier's bias: the comparison can fail
    assert onnx_difference(other, session, x) > 1e-3


def test_a_failed_export_names_the_file_and_leaves_nothing(tmp_path):
    class Unexportable(torch.nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # a branch on the data: torch.export refuses it

    with pytest.raises(RuntimeError, match="exporting Unexportable to .*broken.onnx failed"):
        export_onnx(Unexportable(), torch.zeros(1, 3), tmp_path / "broken.onnx")
    assert list(tmp_path.iterdir()) == []
