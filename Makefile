# desk: `make run` sets everything up on a fresh Debian machine and starts the demo desk;
# `make test` runs the whole test suite.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

# Every install is from requirements/*.txt: exact versions, each file's SHA-256, wheels only;
# then the desk itself, with no dependencies of its own and no build isolation.
PIP_LOCKED := --require-hashes --only-binary :all: --no-deps -r

.PHONY: run test lint pytest system-deps test-deps translations lock clean

run: $(VENV)/.installed
	$(BIN)/desk demo

test: lint pytest

pytest: $(VENV)/.installed | test-deps
	$(BIN)/pytest

# After changing a text sources read: extract it, update every catalogue (changed entries
# become fuzzy, and tests/web/test_languages.py fails until they are translated), compile.
translations: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg -k N_ -c TRANSLATORS: -o desk/translations/messages.pot \
	  --no-location \
	  --project desk --version 1 --msgid-bugs-address "" --copyright-holder desk .
	$(BIN)/pybabel update -i desk/translations/messages.pot -d desk/translations --no-wrap \
	  --ignore-obsolete
	$(BIN)/pybabel compile -d desk/translations

# Style, types, and the layers of the tree (no import cycle, no layer reaching up). The product
# is type-checked strictly (pyproject.toml); the tests and benchmarks at a lower level, with
# every function body checked (mypy-tests.ini).
lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --config-file mypy-tests.ini
	$(BIN)/pytest -q -p no:cacheprovider tests/unit/test_layering.py

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

# Only the tests need these: the browser tests drive Debian's Chromium; the deployment tests
# check the generated torrc with tor itself, the front with HAProxy and the install script with
# shellcheck.
test-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	command -v tor >/dev/null 2>&1 || missing="$$missing tor"; \
	command -v shellcheck >/dev/null 2>&1 || missing="$$missing shellcheck"; \
	[ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(APT) update -q && $(APT) install -y -q $$missing; \
	fi

$(VENV)/.installed: pyproject.toml requirements/build.txt requirements/test.txt | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP_LOCKED) requirements/build.txt
	$(BIN)/pip install -q $(PIP_LOCKED) requirements/test.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

# After changing a dependency in pyproject.toml: pin the new set, with hashes, for the tests
# (everything), the server, the console and the build. uv resolves for Python 3.11 on every
# platform; the server's and the console's pins are the tests' (tests/unit/test_lock.py).
UV_VERSION := 0.13.10
lock: $(VENV)/.installed
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
	  pyproject.toml --extra server --extra console --extra test -o requirements/test.txt
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
	  pyproject.toml --extra server -c requirements/test.txt -o requirements/server.txt
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
	  pyproject.toml --extra console -c requirements/test.txt -o requirements/console.txt
	$(BIN)/uv pip compile -q --generate-hashes --universal --python-version 3.11 \
	  requirements/build.in -o requirements/build.txt

clean:
	rm -rf $(VENV) desk-demo *.egg-info .pytest_cache .ruff_cache
