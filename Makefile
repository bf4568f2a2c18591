# The two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# The GTK backend gives the tray its full menu; it needs system build packages
	@# (see README, Troubleshooting). Without them the tray falls back to pystray's xorg backend.
	$(PY) -m pip install --quiet -e '.[gtk]' || echo "note: PyGObject not installed (GTK tray menu unavailable)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/trayagent demo

test: $(STAMP)
	$(PY) -m pytest -ra

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
