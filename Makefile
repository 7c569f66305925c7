# desk: `make run` sets everything up on a fresh Debian machine and starts the demo desk;
# `make test` runs the whole test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: run test lint pytest system-deps test-deps clean

run: $(VENV)/.installed
	$(BIN)/desk demo

test: lint pytest

pytest: $(VENV)/.installed | test-deps
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# System packages: gnupg and Python's venv module for the desk; ffmpeg and exiftool for the
# review console (and its tests).
system-deps:
	@missing=""; \
	command -v gpg >/dev/null 2>&1 || missing="$$missing gnupg"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v exiftool >/dev/null 2>&1 || missing="$$missing libimage-exiftool-perl"; \
	$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT) update -q && $(APT) install -y -q $$missing; \
	fi

# The browser tests drive Debian's Chromium; only the tests need it.
test-deps:
	@[ -x /usr/bin/chromium ] || { $(APT) update -q && $(APT) install -y -q chromium; }

$(VENV)/.installed: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) desk-demo *.egg-info .pytest_cache .ruff_cache
