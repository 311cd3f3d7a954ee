# Two commands on a fresh machine:  make demo  (the whole pipeline)  and  make test  (the suite).
# The CPU build of torch is pinned first: an open range would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# e.g. TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu' where pip offers no CPU wheel
TORCH_PIP_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup browser demo test test-all lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH) $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/seqgan run --config chitchat-cpu

# The web page's test drives Debian's chromium through Playwright (no browser download). Installing
# it needs root and apt-get; when that is impossible the test is skipped: this never fails the build.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser test"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; }; } \
		|| echo "note: could not install chromium; the browser test will be skipped"; \
	else echo "note: chromium is absent (apt-get install chromium as root); the browser test will be skipped"; fi

test: setup browser
	$(PY) -m pytest -q

test-all: setup browser
	$(PY) -m pytest -q -m ''

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
