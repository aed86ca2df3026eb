"""``python -m eoslib`` — see :mod:`eoslib.book.cli`."""

import sys

from eoslib.book.cli import main

sys.exit(main())
