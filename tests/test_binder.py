"""Binder's files follow repo2docker's conventions, and what postBuild installs resolves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_environment_names_python_and_pip_only_and_postbuild_installs_the_course():
    environment = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    assert "python=3.11" in environment["dependencies"] and "pip" in environment["dependencies"]
    assert not any(isinstance(d, dict) for d in environment["dependencies"]), \
        "no pip section: repo2docker builds it before the repository is there"
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK) and post_build.read_text().startswith("#!/bin/bash")
    command = next(line for line in post_build.read_text().splitlines() if "pip install" in line)
    assert command.rstrip().endswith(" .") and " -e " not in command and "whl/cpu" in command


def test_what_postbuild_installs_resolves(tmp_path):
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                    "--report", str(report), "."], cwd=ROOT, check=True, capture_output=True)
    planned = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"course-utils", "torch", "torchvision", "papermill", "onnxruntime", "jupyterlab"} <= planned
