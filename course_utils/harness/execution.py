"""Headless execution of a notebook that never waits forever.

    python -m course_utils.harness.execution NOTEBOOK OUTPUT [-p NAME VALUE ...] [--timeout S] [--report FILE]
    papermill NOTEBOOK OUTPUT --engine course   # the same client, from papermill's own command

Why a client of our own. Under nbclient (papermill's executor), a cell that shows an
`ipywidgets` widget with an Output widget inside (`interact` has one) makes the client
write a `comm_msg` on the kernel's shell socket for every output the cell prints, while
the same client is waiting on that socket for the cell's `execute_reply`. Now and then the
send swallows the socket's edge-triggered wake-up: the reply lies unread in the socket
and the client waits for good. Measured on a notebook of three `interact` cells printing 40
outputs each: plain papermill hung in 10 of 130 runs (in the 3 hangs probed, the client's
shell socket held the unread reply: `zmq.EVENTS` showed POLLIN 25 s into the wait); with
the output widget's replies switched off, 0 of 30; with `CourseClient`, 0 of 40.
`CourseClient` waits for the reply in short slices, so a missed wake-up costs at most
`POLL_SECONDS`, and it watches the two ways a cell can still stall:

- a cell that runs past its timeout (the profile's `cell_timeout`): `CellTimeoutError`;
- a kernel that went idle but never answered the cell: `KernelStalled`, after
  `IDLE_GRACE_SECONDS`.

`execute` then runs the notebook once more in a fresh kernel and says that it did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from queue import Empty

from nbclient.client import timestamp
from nbclient.exceptions import CellTimeoutError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

POLL_SECONDS = 1.0  # the longest a reply can lie unread in the shell socket
IDLE_GRACE_SECONDS = 30.0  # a kernel idle this long without answering its cell has stalled
ENGINE = "course"  # papermill's --engine name for CourseClient (also an entry point)
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info", "Kernel didn't respond")


class KernelStalled(CellTimeoutError):
    """The kernel went idle after a cell but never sent the cell's reply."""


def _cell_label(cell, index: int | None = None) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip()), "")
    where = f"cell {index}" if index is not None else "a cell"
    return f"{where} ({first[:60]!r})"


class CourseClient(PapermillNotebookClient):
    """papermill's client, waiting for each cell's reply in slices of POLL_SECONDS."""

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg,
                                    task_poll_kernel_alive):
        deadline = None if timeout is None else time.monotonic() + timeout
        idle_since = None
        label = _cell_label(cell, next((i for i, c in enumerate(self.nb.cells) if c is cell), None))
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                task_poll_kernel_alive.cancel()
                raise CellTimeoutError(f"{label} ran past its timeout of {timeout:.0f} s")
            if task_poll_output_msg.done():
                idle_since = idle_since or now
                if now - idle_since >= IDLE_GRACE_SECONDS:
                    task_poll_kernel_alive.cancel()
                    raise KernelStalled(f"the kernel went idle in {label} but never finished it "
                                        f"(no reply in {IDLE_GRACE_SECONDS:.0f} s)")
            wait = POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - now))
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=wait)
            except Empty:
                await self._async_check_alive()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
            try:
                await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
            except (asyncio.TimeoutError, Empty):
                task_poll_kernel_alive.cancel()
                raise CellTimeoutError(f"{label}: no output came in {self.iopub_timeout} s after "
                                       "its reply") from None
            task_poll_kernel_alive.cancel()
            return msg


class CourseEngine(NBClientEngine):
    """papermill's nbclient engine with CourseClient (`papermill ... --engine course`)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("input_path", "timeout", "startup_timeout")}
        return CourseClient(nb_man, timeout=execution_timeout, startup_timeout=start_timeout,
                            kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                            stderr_file=stderr_file, **kwargs).execute()


papermill_engines.register(ENGINE, CourseEngine)


@dataclass
class Report:
    """How an execution went: tries made, and the stall that caused a retry, if any."""

    tries: int
    seconds: float
    stalled: str | None = None  # what the first try's stall was (which cell, how)
    error: str | None = None  # the final error, None when the notebook finished

    @property
    def ok(self) -> bool:
        return self.error is None


class NotebookFailed(RuntimeError):
    """The notebook raised, or stalled twice. `report` says which and where."""

    def __init__(self, report: Report):
        super().__init__(report.error if not report.stalled else f"{report.error} "
                         f"(after a retry in a fresh kernel; the first try: {report.stalled})")
        self.report = report


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Refuse names the notebook's parameters cell does not define: papermill would inject
    them, the notebook would ignore them, and the run would look like it used them."""
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"{Path(notebook).name} has no parameter {', '.join(unknown)}; "
                         f"its parameters are: {', '.join(known)}")


def _run_once(notebook: Path, output: Path, parameters: dict, timeout: float | None) -> None:
    import papermill

    papermill.execute_notebook(str(notebook), str(output), cwd=str(notebook.parent),
                               parameters=parameters, kernel_name="python3", engine_name=ENGINE,
                               progress_bar=False, execution_timeout=timeout,
                               extra_arguments=["--IPKernelApp.log_level=ERROR"])


def execute(notebook: Path, output: Path, parameters: dict, timeout: float | None) -> Report:
    """Run `notebook` with papermill in a fresh kernel, writing the executed copy to `output`;
    `timeout`: seconds a cell may take. A cell that stalls (past its timeout, or a kernel idle
    without answering), or a kernel that dies while starting, gets one retry of the whole
    notebook in a fresh kernel. Returns the
    report; raises NotebookFailed (with it) when a cell raised or the retry stalled too. The
    kernel logs errors only: its warning that local TCP traffic is unencrypted is noise here
    (kernels listen on 127.0.0.1); a notebook's own warnings still show in its outputs.
    A parameter the notebook does not define, a timeout that is not a positive number of
    seconds, or an output that would overwrite the notebook is refused (ValueError) before
    anything runs."""
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout is the seconds a cell may take, a positive number (or None for no limit); "
                         f"got {timeout!r}")
    if Path(output).resolve() == Path(notebook).resolve():
        raise ValueError(f"the output {output} is the notebook itself: running it would overwrite its "
                         f"source; write the executed copy elsewhere")
    check_parameters(notebook, parameters)
    start, stalled = time.perf_counter(), None
    for tries in (1, 2):
        try:
            _run_once(Path(notebook), Path(output), parameters, timeout)
            return Report(tries, round(time.perf_counter() - start, 1), stalled)
        except Exception as failure:  # noqa: BLE001 (a cell raised: reported, not retried)
            if _worth_a_retry(failure) and stalled is None:
                stalled = str(failure)
                print(f"{Path(notebook).name}: {failure}; running it again in a fresh kernel",
                      file=sys.stderr, flush=True)
                continue
            error = (f"{failure.ename} in cell {failure.cell_index}: {failure.evalue}"
                     if hasattr(failure, "evalue") else f"{type(failure).__name__}: {_last_line(failure)}")
        raise NotebookFailed(Report(tries, round(time.perf_counter() - start, 1), stalled, error))


def _worth_a_retry(failure: Exception) -> bool:
    """A stalled cell, or a kernel that died or never answered before the first cell ran
    (jupyter_client's words; two kernels starting at once can race for a port): neither
    says anything about the notebook."""
    return isinstance(failure, CellTimeoutError) or (
        isinstance(failure, RuntimeError) and str(failure).startswith(KERNEL_START_FAILURES))


def _last_line(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("-y", "--parameters", default="{}", help="parameters as a JSON object")
    parser.add_argument("--timeout", type=float,
                        help="seconds a cell may take (default: the cell_timeout of the PROFILE parameter)")
    parser.add_argument("--report", type=Path, help="write the run's report here as JSON")
    args = parser.parse_args(argv)
    try:
        parameters = json.loads(args.parameters)
    except json.JSONDecodeError as error:
        parser.error(f"-y must be a JSON object such as '{{\"PROFILE\": \"smoke\"}}' ({error})")
    if not isinstance(parameters, dict):
        parser.error(f"-y must be a JSON object of parameter names and values, got {args.parameters!r}")
    try:
        if args.timeout is None:  # never without a limit
            from ..profiles import get_profile

            args.timeout = get_profile(str(parameters.get("PROFILE", "auto"))).cell_timeout
        report = execute(args.notebook, args.output, parameters, args.timeout)
    except NotebookFailed as failed:
        report = failed.report
    except ValueError as error:  # a parameter the notebook does not have, an unknown profile
        report = Report(0, 0.0, error=str(error))
    if args.report:
        args.report.write_text(json.dumps(asdict(report), indent=2))
    if not report.ok:
        print(report.error, file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
