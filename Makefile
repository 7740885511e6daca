# marker_excite — the two commands of the README:
#   make demo   set up a local virtual environment and run the main job on the built-in synthetic data
#   make test   set up the same environment and run the fast test suite
#   make notebooks  open the notebooks in Jupyter (installed into the environment on first use)
#   make slurm-test the --launcher slurm tests against a real single-node SLURM (root; apt-installs slurm-wlm, munge)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRA ?= cpu
DEMO_DIR ?= demo_output

.PHONY: venv demo test test-all slurm-test bench notebooks clean

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRA),dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m marker_excite.demo --out $(DEMO_DIR)

test: venv
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-all: venv
	$(PY) -m pytest -q -p no:cacheprovider

slurm-test: venv
	command -v slurmctld >/dev/null && command -v munged >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge)
	PATH="$$PATH:/usr/sbin" $(PY) -m pytest -q -p no:cacheprovider tests/test_slurm.py

notebooks: venv
	$(PY) -c "import notebook" 2>/dev/null || $(PY) -m pip install -q -e ".[$(EXTRA),dev,notebooks]"
	$(PY) -m notebook --ServerApp.root_dir=notebooks

bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info
