# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv when missing and
# reinstall only when the pinned requirements or the project metadata change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: demo test lint install constraints clean

$(STAMP): requirements/constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/nephroseg demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check nephroseg tests $(wildcard bench)
	$(BIN)/ruff format --check nephroseg tests $(wildcard bench)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Re-pin after a dependency change: installs the direct dependencies unpinned, then freezes.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e '.[dev]'
	{ sed -n '1,2p' requirements/constraints.txt; .venv-pin/bin/python -m pip freeze --exclude-editable; } \
		> requirements/constraints.txt.tmp && mv requirements/constraints.txt.tmp requirements/constraints.txt
	rm -rf .venv-pin

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
