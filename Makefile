# The two commands of the course (see README.md):
#   make course   set up, then run every notebook headless and write runs/<date>/summary.md
#   make test     set up, then run the unit tests and every notebook in the smoke profile
# Both create the virtual environment .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
# The notebooks' kernel is "python3" from the venv: put its bin first on PATH.
export PATH := $(BIN):$(PATH)
# Local copies of MNIST and CIFAR-10 beside the repo, when present (never copied into it).
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
export COURSE_DATA_DIRS ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)

.PHONY: course test setup lab student class site benchmark clean-runs gpu-check

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

course: setup
	$(BIN)/python -m course_utils.harness.run_course $(if $(PROFILE),--profile $(PROFILE),)

# Two workers: the notebooks' runs are most of the suite's time, and two of them side by side
# (one thread each) finish sooner than one after the other on two threads.
TEST_WORKERS ?= 2

test: setup
	COURSE_PROFILE=smoke $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

lab: setup
	$(BIN)/jupyter lab notebooks/

# site/: the reference run kept in notebooks/results/quick/ as pages, read with no kernel
site: setup
	$(BIN)/python -m course_utils.harness.site

# the student edition in student/: no solutions, every implement-it task a stub (tools/make_student.py)
student: setup
	$(BIN)/python tools/make_student.py --out student

# the class edition in class/: the student edition less the sections tagged optional (docs/teachers.md)
class: setup
	$(BIN)/python tools/make_student.py --short --out class

benchmark: setup
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/surgery_speed.py
	$(BIN)/python benchmarks/reduce_round.py
	$(BIN)/python benchmarks/oracles.py
	$(BIN)/python benchmarks/latency.py --onnx

gpu-check: setup
	$(BIN)/python -m course_utils.harness.gpu_check
