"""The book layer: what turns eoslib's engines and mechanisms into chapters.

- :mod:`eoslib.book.results`  — the chapters' results records: schema, provenance, save / load.
- :mod:`eoslib.book.verdicts` — claims declared before the run, rules that grade them, verdict text.
- :mod:`eoslib.book.scales`   — a chapter's settings chosen by scale, overridable per parameter.
- :mod:`eoslib.book.display`  — the paper-vs-ours table and the book's figure style.
- :mod:`eoslib.book.figures`  — the standard EoS figure of an ``eoslib.track`` run (``eoslib.plot_edge``).
- :mod:`eoslib.book.chapters` — discovering chapters, their parameters, executing them (papermill).
- :mod:`eoslib.book.store`    — the results store: paper-scale runs with a checksummed manifest.
- :mod:`eoslib.book.sweep`    — a chapter over a grid of parameters, one execution per point (submitit).
- :mod:`eoslib.book.cli`      — ``python -m eoslib``: list, run, sweep, store and prepare chapters.

Imports flow one way: the book layer may import :mod:`eoslib.mechanisms` and
:mod:`eoslib.engine`, never the reverse.
"""
