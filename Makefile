# The two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
GTK_STAMP := $(VENV)/.installed-gtk

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The optional gtk extra (PyGObject) adds pystray's XEmbed menu for trays without
# StatusNotifierItem support; the default install already has the SNI tray and its menu.
# It compiles against system packages (see README, Tray), so it may fail: then its stamp
# is not written and the next `make` tries again, e.g. after those packages were installed.
$(GTK_STAMP): $(STAMP)
	@if $(PY) -m pip install --quiet -e '.[gtk]'; then touch $(GTK_STAMP); \
	else echo "note: PyGObject not installed (optional: the XEmbed tray's GTK menu); make retries it next time"; fi

install: $(STAMP) $(GTK_STAMP)

demo: install
	$(VENV)/bin/trayagent demo

test: install
	$(PY) -m pytest -ra

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
