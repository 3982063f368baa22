"""Headless runs never wait forever: a cell past its timeout, or a kernel that goes idle
without answering, ends the run with a message naming the cell, after one retry; a kernel
that dies while starting gets a fresh one."""

import json
import time

import nbformat
import pytest

from course_utils.harness import execution
from course_utils.harness.execution import NotebookFailed, execute


def notebook_file(path, *sources):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("PROFILE = 'auto'", metadata={"tags": ["parameters"]}),
        *(nbformat.v4.new_code_cell(source) for source in sources)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_a_cell_that_never_returns_ends_the_run_within_its_timeout(tmp_path, capfd):
    hanging = notebook_file(tmp_path / "hang.ipynb", "print('before')", "import time\nwhile True:\n    time.sleep(1)")
    start = time.perf_counter()
    with pytest.raises(NotebookFailed) as failed:
        execute(hanging, tmp_path / "ran.ipynb", {}, timeout=3)
    seconds = time.perf_counter() - start
    report = failed.value.report
    assert report.tries == 2 and "cell 2" in report.stalled and "timeout of 3 s" in report.stalled
    assert "import time" in str(failed.value) and "fresh kernel" in str(failed.value)
    assert "running it again in a fresh kernel" in capfd.readouterr().err
    assert seconds < 60, f"two tries of a 3 s timeout took {seconds:.0f} s"


def test_a_kernel_idle_without_a_reply_is_caught(tmp_path, monkeypatch):
    """The widget hang's symptom, simulated: the cell's reply never reaches the client."""
    monkeypatch.setattr(execution, "IDLE_GRACE_SECONDS", 2.0)
    shell_get = execution.CourseClient._async_poll_for_reply

    async def drop_replies(self, msg_id, cell, timeout, *tasks):
        if "lost" in cell.source:
            msg_id = "a reply that never comes"
        return await shell_get(self, msg_id, cell, timeout, *tasks)

    monkeypatch.setattr(execution.CourseClient, "_async_poll_for_reply", drop_replies)
    notebook = notebook_file(tmp_path / "lost.ipynb", "x = 'lost'")
    with pytest.raises(NotebookFailed) as failed:
        execute(notebook, tmp_path / "ran.ipynb", {}, timeout=None)
    assert "went idle in cell 1" in failed.value.report.stalled and failed.value.report.tries == 2


def test_a_stall_then_a_clean_retry_is_reported(tmp_path):
    flag = tmp_path / "first-try"
    notebook = notebook_file(tmp_path / "once.ipynb",
                             f"import os, time\nif not os.path.exists({str(flag)!r}):\n"
                             f"    open({str(flag)!r}, 'w').close()\n    time.sleep(60)")
    report = execute(notebook, tmp_path / "ran.ipynb", {}, timeout=3)
    assert report.ok and report.tries == 2 and "cell 1" in report.stalled


def test_a_kernel_that_dies_while_starting_gets_a_fresh_one(tmp_path, monkeypatch):
    """The CI failure of stop 49: a kernel died before replying to kernel_info (two kernels
    starting at once can race for a port); the notebook itself was fine."""
    run_once, starts = execution._run_once, []

    def dies_the_first_time(*args):
        starts.append(1)
        if len(starts) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        run_once(*args)

    monkeypatch.setattr(execution, "_run_once", dies_the_first_time)
    report = execute(notebook_file(tmp_path / "ok.ipynb", "print(1)"), tmp_path / "ran.ipynb", {}, timeout=30)
    assert report.ok and report.tries == 2 and "kernel_info" in report.stalled


def test_a_raising_cell_is_not_retried(tmp_path):
    notebook = notebook_file(tmp_path / "raises.ipynb", "raise ValueError('bad parameter')")
    with pytest.raises(NotebookFailed) as failed:
        execute(notebook, tmp_path / "ran.ipynb", {}, timeout=30)
    assert failed.value.report.tries == 1 and "bad parameter" in failed.value.report.error


def test_the_command_line_writes_its_report(tmp_path):
    notebook = notebook_file(tmp_path / "ok.ipynb", "print(PROFILE)")
    assert execution.main([str(notebook), str(tmp_path / "ran.ipynb"), "-y", '{"PROFILE": "smoke"}',
                           "--timeout", "30", "--report", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["tries"] == 1
    assert nbformat.read(tmp_path / "ran.ipynb", 4).cells[-1].outputs[0].text == "smoke\n"


@pytest.mark.parametrize("given", ["{PROFILE: smoke}", '["smoke"]'])
def test_the_command_line_refuses_parameters_that_are_not_a_json_object(tmp_path, capsys, given):
    notebook = notebook_file(tmp_path / "ok.ipynb", "print(PROFILE)")
    with pytest.raises(SystemExit) as stopped:
        execution.main([str(notebook), str(tmp_path / "ran.ipynb"), "-y", given])
    assert stopped.value.code == 2 and "-y must be a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "ran.ipynb").exists()
