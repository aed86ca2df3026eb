# eos-book: `make book` renders the book, `make test` runs every check CI runs.
# Both set themselves up on a fresh machine (Python 3.11 + a package registry).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-stamp

# Data: a local copy (../shared/data here and in CI) is used when present; otherwise
# eoslib downloads the canonical files, checksummed, into its cache. An EOSLIB_DATA
# already in the environment wins.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export EOSLIB_DATA ?= $(SHARED_DATA)
endif
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test install unit nbval book-smoke browser chromium lock clean help wheel

help:
	@echo "make book   - execute every chapter at scale=book and render _build/html/index.html"
	@echo "make test   - unit tests, nbval at scale=smoke, smoke book build (-W), offline browser check, wheel"
	@echo "make wheel  - build eoslib's wheel, install it into a clean venv, run the quickstart from it"
	@echo "make clean  - remove build outputs and the execution cache (keeps .venv)"

install: $(STAMP)

$(STAMP): pyproject.toml requirements/book.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==0.9.30
	$(UV) pip install -q -p $(PY) -r requirements/book.lock
	$(UV) pip install -q -p $(PY) --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (eoslib)" >/dev/null
	touch $@

# The book: chapters run at scale=book through jupyter-cache, so an unchanged rebuild is quick.
book: $(STAMP)
	EOSLIB_RECORDS=$(abspath _build/records) $(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Book: $(abspath _build/html/index.html)"

# chromium first: a machine that cannot get it learns so at once, not after the long steps.
# The steps are compile-bound (XLA compiles on one core), so on CI's 2 cores the unit tests run
# in two pytest-xdist workers and the two notebook executions (nbval, book-smoke) side by side.
JOBS ?= 2
test: chromium
	$(MAKE) unit wheel
	$(MAKE) -j$(JOBS) --output-sync=target nbval book-smoke
	$(MAKE) browser

# The results store first (book/results: manifest, sha256, clean commits), then the unit tests.
unit: $(STAMP)
	$(PY) -m eoslib store --check
	$(PY) -m pytest tests -q -n $(JOBS)

# Every chapter, parameterised by papermill at scale=smoke, executed and checked by nbval.
nbval: $(STAMP)
	rm -rf _build/nbval
	$(PY) -m eoslib prepare --scale smoke --out _build/nbval
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env _build/nbval

# The wheel: eoslib built alone (no book extras) from a copy of its sources, installed into a
# clean virtualenv with the pinned versions of requirements/book.lock (from the package registry,
# or uv's cache), and the quickstart cell of the "Your own model" chapter (tagged `quickstart`)
# run from it, outside this checkout's sources, as a reader who typed `pip install eoslib` would.
WHEEL_DIR := _build/wheel
wheel: $(STAMP)
	rm -rf $(WHEEL_DIR)
	mkdir -p $(WHEEL_DIR)/sdist
	cp -r pyproject.toml README.md src $(WHEEL_DIR)/sdist/
	$(PY) -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
	  -w $(WHEEL_DIR)/dist $(WHEEL_DIR)/sdist
	$(UV) venv -q -p $(PY) $(WHEEL_DIR)/venv
	$(UV) pip install -q -p $(WHEEL_DIR)/venv/bin/python -c requirements/book.lock \
	  $(WHEEL_DIR)/dist/eoslib-*.whl matplotlib
	$(PY) -c "from eoslib.book import script; \
	  cells = [c.source for c in script.read_percent('notebooks/your-own-model.py').cells \
	           if 'quickstart' in c.metadata.get('tags', [])]; \
	  assert len(cells) == 1, 'one cell tagged quickstart expected'; print(cells[0])" \
	  > $(WHEEL_DIR)/quickstart.py
	cd $(WHEEL_DIR) && MPLBACKEND=Agg venv/bin/python -c "import eoslib, sys; \
	  assert 'site-packages' in eoslib.__file__, eoslib.__file__; print('eoslib from', eoslib.__file__)"
	cd $(WHEEL_DIR) && MPLBACKEND=Agg venv/bin/python quickstart.py
	@echo "wheel: $$(ls $(WHEEL_DIR)/dist) installs into a clean venv and runs the quickstart"

# The whole book at scale=smoke with warnings as errors: a broken toc, citation or figure fails.
book-smoke: $(STAMP)
	rm -rf _build/smoke
	EOSLIB_SCALE=smoke EOSLIB_RECORDS=$(abspath _build/smoke/records) \
	  $(VENV)/bin/jupyter-book build . --path-output _build/smoke -W -n --keep-going

# The smoke-built book in Debian's Chromium with the network off: math typeset by the bundled
# MathJax (no formula left as raw TeX, no untypeset $…$ in the text), every figure loaded, the
# book's own pages fit the column at 1280 and 800 px, the status page's downloads exist;
# screenshots (1280 and 800 px) in _build/smoke/_build/screenshots.
browser: $(STAMP) chromium
	test -f _build/smoke/_build/html/index.html || $(MAKE) book-smoke
	EOSLIB_BOOK_HTML=$(abspath _build/smoke/_build/html) $(PY) -m pytest -q -p no:cacheprovider tests/browser

# What the browser check needs besides .venv: Debian's chromium and chromium-driver (registry
# packages, not downloads). Installed with apt-get when missing and make runs as root; otherwise
# make stops here, before the long steps of `make test`, saying what to run.
BROWSER_DEBS := chromium chromium-driver
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	echo "make: the browser check needs Chromium and its driver (\`chromium\` and \`chromedriver\` on PATH)."; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "make: installing Debian's $(BROWSER_DEBS) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_DEBS) >/dev/null \
	    && command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	  echo "make: apt-get could not install them (its messages are above): fix that, then run make again."; \
	elif command -v apt-get >/dev/null; then \
	  echo "make: installing them needs root. Run  sudo apt-get install $(BROWSER_DEBS)  then make again."; \
	else \
	  echo "make: this system has no apt-get: install Chromium and the chromedriver of the same version,"; \
	  echo "      put both on PATH as \`chromium\` and \`chromedriver\`, then run make again."; \
	fi; \
	echo "make: the checks that need no browser run without them: make unit nbval book-smoke"; \
	exit 1

# Re-resolve the pinned lock file from requirements/book.in (needs uv).
lock: $(STAMP)
	$(UV) pip compile -q -p $(PY) requirements/book.in -o requirements/book.lock

clean:
	rm -rf _build
