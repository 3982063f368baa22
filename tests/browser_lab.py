"""Notebooks run the way a person runs them: JupyterLab in a real Chromium.

`Lab` starts JupyterLab from this environment on 127.0.0.1 (a free port, a token) and a
headless Chromium through playwright. `Lab.run(notebook)` opens a notebook, runs all its
cells, then moves every widget control with the keyboard (a slider to its far end) or a choice (dropdowns)
and records whether the widget's output changed and whether a traceback appeared; finally
it saves the notebook, so that the other notebook tests check this same execution.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = ("no Chromium found: install it with `apt-get install chromium` (Debian; playwright's own "
                "browser download does not work here) to run the browser tests")
SCREENSHOTS_ENV = "COURSE_BROWSER_SCREENSHOTS"  # a folder: screenshots of every widget before and after
CONTROLS = ".widget-slider .noUi-handle, .widget-dropdown select"
TOKEN = "course-test"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def has_widgets(notebook) -> bool:
    """Whether a notebook (nbformat) shows an interactive widget."""
    return any(cell.cell_type == "code" and ("widgets." in cell.source or "_explorer(" in cell.source)
               for cell in notebook.cells)


@dataclass
class Interaction:
    control: str  # which control, in which cell
    changed: bool  # the widget's output differs after the change
    tracebacks: list[str]  # tracebacks shown in that cell's outputs afterwards


@dataclass
class LabRun:
    interactions: list[Interaction] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


class LabError(RuntimeError):
    """The notebook did not run to the end in JupyterLab, or showed a traceback."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lab:
    """JupyterLab serving `root` and one headless Chromium, for `with Lab(root) as lab:`."""

    def __init__(self, root: Path, screenshots: Path | None = None, failures: Path | None = None,
                 timeout: float = 900):
        self.root, self.screenshots, self.timeout = root, screenshots, timeout
        self.failures = failures or Path(tempfile.gettempdir()) / "course-browser-failures"
        self.port = _free_port()

    def __enter__(self) -> Lab:
        from playwright.sync_api import sync_playwright

        settings = Path(tempfile.mkdtemp(prefix="lab-settings-"))
        tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True)
        # every cell stays in the page (JupyterLab 4 otherwise renders only those in view)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True)
        news.write_text(json.dumps({"fetchNews": "false"}))  # no "official Jupyter news?" pop-up
        environment = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings))
        self.server = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={self.root}"],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_server()
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=chromium(),
                                                       args=["--no-sandbox", "--disable-gpu"])
        return self

    def __exit__(self, *exc) -> None:
        self.browser.close()
        self.playwright.stop()
        self.server.terminate()
        self.server.wait(30)

    def _wait_for_server(self) -> None:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status?token={TOKEN}", timeout=2)
                return
            except OSError:
                if self.server.poll() is not None:
                    raise LabError("JupyterLab exited while starting") from None
                time.sleep(0.5)
        raise LabError("JupyterLab did not start in 60 s")

    def run(self, name: str) -> LabRun:
        """Run notebook `name` (a file in root) in JupyterLab, exercise its widgets, save it."""
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        record = LabRun()
        page.on("console", lambda message: message.type == "error" and record.console_errors.append(message.text))
        try:
            page.goto(f"http://127.0.0.1:{self.port}/lab/workspaces/{Path(name).stem}/tree/{name}"
                      f"?token={TOKEN}&reset")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_selector("text=| Idle", timeout=120_000)  # the kernel is up
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            self._wait_until_done(page)
            failed = self._tracebacks(page.locator(".jp-Notebook"))
            if failed:
                raise LabError(f"{name}: a cell failed in JupyterLab:\n{failed[0][-2000:]}")
            for index in range(page.locator(CONTROLS).count()):
                record.interactions.append(self._exercise(page, index, name))
            mtime = (self.root / name).stat().st_mtime
            page.locator(".jp-Notebook").click(position={"x": 5, "y": 5})
            page.keyboard.press("Control+s")
            self._wait_for(lambda: (self.root / name).stat().st_mtime > mtime, 60, f"{name} was not saved")
            return record
        except Exception:
            self.failures.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.failures / f"{Path(name).stem}.png"))
            (self.failures / f"{Path(name).stem}-console.txt").write_text("\n".join(record.console_errors))
            raise
        finally:
            page.close()

    def _wait_until_done(self, page) -> None:
        # Run All has finished when the kernel is idle, no prompt shows [*], and every code cell
        # has run or one shows a traceback (Run All stops there)
        page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
                const failed = [...document.querySelectorAll(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
                    .some(output => output.textContent.includes('Traceback'));
                return document.body.textContent.includes('| Idle') && !prompts.some(text => text.includes('*'))
                    && (failed || prompts.every(text => /\\[\\d+\\]/.test(text)));
            }""", timeout=self.timeout * 1000, polling=1000)

    @staticmethod
    def _tracebacks(area) -> list[str]:
        outputs = area.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return [text for text in outputs.all_inner_texts() if "Traceback" in text]

    def _exercise(self, page, index: int, name: str) -> Interaction:
        control = page.locator(CONTROLS).nth(index)
        cell = control.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')][1]")
        # what the widget draws: its output widgets (the controls, whose readouts change too, excluded)
        drawn = cell.locator(".widget-output")

        def shown() -> str:
            return "".join(drawn.evaluate_all(
                "outputs => outputs.map(o => [...o.querySelectorAll('.jp-OutputArea-output')].map(e => e.innerHTML).join())"))

        control.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        before = shown()
        label = f"{'slider' if 'noUi' in (control.get_attribute('class') or '') else 'dropdown'} {index}"
        self._shoot(page, f"{Path(name).stem}-{index}-before")
        if control.evaluate("element => element.tagName") == "SELECT":
            options = control.locator("option").all_inner_texts()
            current = control.evaluate("element => element.selectedIndex")
            control.select_option(index=(current + 1) % len(options))
        else:
            # to the far end, as a person dragging it would: one step can leave a coarse result unchanged
            control.focus()
            control.press("End" if control.get_attribute("aria-valuenow") != control.get_attribute("aria-valuemax")
                          else "Home")
        changed = self._wait_for(lambda: self._settled(page, shown) not in (None, before), 60, None)
        self._shoot(page, f"{Path(name).stem}-{index}-after")
        return Interaction(label, changed, self._tracebacks(cell))

    @staticmethod
    def _idle(page) -> bool:
        return page.locator("text=| Idle").count() > 0

    def _settled(self, page, shown) -> str | None:
        # what the widget shows once the kernel is idle and the drawing has stopped changing
        page.wait_for_timeout(1000)
        first = shown()
        page.wait_for_timeout(1000)
        return first if self._idle(page) and shown() == first else None

    @staticmethod
    def _wait_for(condition, seconds: float, failure: str | None) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.5)
        if failure:
            raise LabError(failure)
        return False

    def _shoot(self, page, stem: str) -> None:
        if self.screenshots is not None:
            self.screenshots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.screenshots / f"{stem}.png"))
