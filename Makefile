# CareOps Desk. Every target bootstraps what it needs into .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := resources/demo/Patient.ndjson
XVFB_PKGS := xvfb x11-utils xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
	libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-xkb1 \
	libegl1 libgl1 libfontconfig1 libdbus-1-3 fonts-dejavu-core
XVFB_RUN := xvfb-run -a -s "-screen 0 1280x800x24"

.PHONY: run test bench package demo system-deps lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,package]'
	touch $(STAMP)

# Debian packages for a real window under Xvfb (Qt names the wrong library when one is missing).
system-deps:
	@if ! command -v xvfb-run >/dev/null || ! dpkg -s libxcb-cursor0 >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(XVFB_PKGS) >/dev/null; \
	fi

$(DEMO): $(STAMP)
	$(VENV)/bin/careops demo-generate

demo: $(DEMO)

# Demo mode: without CAREOPS_HOME it uses .demo-home with a demo-only passphrase (synthetic data).
run: $(STAMP) $(DEMO)
	@if [ -z "$$CAREOPS_HOME" ]; then \
		export CAREOPS_HOME="$(CURDIR)/.demo-home" CAREOPS_PASSPHRASE="$${CAREOPS_PASSPHRASE:-demo-only}"; fi; \
	if [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ]; then \
		$(MAKE) --no-print-directory system-deps && $(XVFB_RUN) $(PY) -m app $(ARGS); \
	else $(PY) -m app $(ARGS); fi

test: $(STAMP) system-deps fhir-server
	$(XVFB_RUN) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	$(VENV)/bin/lint-imports

bench: $(STAMP) system-deps $(DEMO)
	$(XVFB_RUN) $(PY) -m tests.bench

package: $(STAMP) $(DEMO)
	$(VENV)/bin/pyinstaller --noconfirm --clean build.spec

clean:
	rm -rf $(VENV) $(FHIR_SERVER_VENV) build dist

# Real FHIR R4 server for tests/fhir/test_real_server.py: SEKMET (PyPI sekmet-fhir), pinned with hashes,
# in its own venv so its dependencies never touch the app's.
FHIR_SERVER_DIR := tools/fhir-server
FHIR_SERVER_VENV := $(FHIR_SERVER_DIR)/.venv
FHIR_SERVER_STAMP := $(FHIR_SERVER_VENV)/.installed

.PHONY: fhir-server

$(FHIR_SERVER_STAMP): $(FHIR_SERVER_DIR)/requirements.txt
	rm -rf $(FHIR_SERVER_VENV)
	$(PYTHON) -m venv $(FHIR_SERVER_VENV)
	$(FHIR_SERVER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--require-hashes --no-deps --only-binary=:all: -r $(FHIR_SERVER_DIR)/requirements.txt
	$(FHIR_SERVER_VENV)/bin/python -m pip check --disable-pip-version-check
	touch $(FHIR_SERVER_STAMP)

fhir-server: $(FHIR_SERVER_STAMP)
