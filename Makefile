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

.PHONY: book test install unit nbval book-smoke browser lock clean help

help:
	@echo "make book   - execute every chapter at scale=book and render _build/html/index.html"
	@echo "make test   - unit tests, nbval at scale=smoke, smoke book build (-W), offline browser check"
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

test: unit nbval book-smoke browser

# The results store first (book/results: manifest, sha256, clean commits), then the unit tests.
unit: $(STAMP)
	$(PY) -m eoslib store --check
	$(PY) -m pytest tests -q

# Every chapter, parameterised by papermill at scale=smoke, executed and checked by nbval.
nbval: $(STAMP)
	rm -rf _build/nbval
	$(PY) -m eoslib prepare --scale smoke --out _build/nbval
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env _build/nbval

# The whole book at scale=smoke with warnings as errors: a broken toc, citation or figure fails.
book-smoke: $(STAMP)
	rm -rf _build/smoke
	EOSLIB_SCALE=smoke EOSLIB_RECORDS=$(abspath _build/smoke/records) \
	  $(VENV)/bin/jupyter-book build . --path-output _build/smoke -W -n --keep-going

# The smoke-built book in Debian's Chromium with the network off: math typeset by the bundled
# MathJax, every figure loaded, the book's own pages fit the column at 1280 and 800 px, the status
# page's downloads exist; screenshots (1280 and 800 px) in _build/smoke/_build/screenshots.
browser: $(STAMP)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "make browser needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"; exit 1; }
	test -f _build/smoke/_build/html/index.html || $(MAKE) book-smoke
	EOSLIB_BOOK_HTML=$(abspath _build/smoke/_build/html) $(PY) -m pytest -q -p no:cacheprovider tests/browser

# Re-resolve the pinned lock file from requirements/book.in (needs uv).
lock: $(STAMP)
	$(UV) pip compile -q -p $(PY) requirements/book.in -o requirements/book.lock

clean:
	rm -rf _build
