# Slipway's own build: the wheel is built once; the demo and the tests run that same installed wheel.
PYTHON     ?= python3
TOOLS      := .tools
UV         := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
DEMO_VENV  := .venv-demo
TEST_VENV  := .venv-test
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: demo demo-stop test wheel lint testbed bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# build/ too: setuptools packs whatever build/lib still holds, also modules deleted from src/.
wheel: $(UV)
	rm -rf dist build
	$(UV) build --quiet --wheel --out-dir dist --python $(PYTHON)

# Runs the example pipeline end to end on the embedded defaults (SQLite, local artifact store).
demo: wheel
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(DEMO_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(DEMO_VENV)/bin/python --require-hashes -r requirements.lock
	$(UV) pip uninstall --quiet --python $(DEMO_VENV)/bin/python slipway 2>/dev/null || true  # the name before 0.1.0's rename
	$(UV) pip install --quiet --compile-bytecode --python $(DEMO_VENV)/bin/python --no-deps --reinstall dist/*.whl
	SLIPWAY="$(abspath $(DEMO_VENV))/bin/slipway" sh scripts/demo.sh

demo-stop:
	sh scripts/demo.sh stop

# Installs what the tests need (Debian packages when root, Python packages from the lock file),
# installs the wheel into a clean virtual environment, and runs every test against it.
# --compile-bytecode: uv writes no .pyc by default, and with PYTHONDONTWRITEBYTECODE set (as on CI) no
# process ever does, so each of the suite's thousands of slipway processes compiled every module it
# imports from source: 2.5x the CPU of a 'slipway status'.
test: wheel testbed
	rm -rf $(TEST_VENV)
	$(UV) venv --quiet --python $(PYTHON) $(TEST_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(TEST_VENV)/bin/python --require-hashes -r requirements-dev.lock
	$(UV) pip install --quiet --compile-bytecode --python $(TEST_VENV)/bin/python --no-deps dist/*.whl
	$(TEST_VENV)/bin/ruff check src tests benchmarks
	$(TEST_VENV)/bin/mypy src/slipway
	$(TEST_VENV)/bin/lint-imports --no-cache
	SLIPWAY_TEST_INSTALLED=1 $(TEST_VENV)/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS) tests

testbed:
	sh scripts/install-testbed.sh

bench: wheel testbed
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(TEST_VENV)
	$(UV) pip install --quiet --compile-bytecode --python $(TEST_VENV)/bin/python --require-hashes -r requirements-dev.lock
	$(UV) pip install --quiet --compile-bytecode --python $(TEST_VENV)/bin/python --no-deps --reinstall dist/*.whl
	$(TEST_VENV)/bin/python benchmarks/run.py

clean: demo-stop
	rm -rf dist build $(TOOLS) $(DEMO_VENV) $(TEST_VENV) .demo
