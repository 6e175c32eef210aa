"""``python -m riptdev``: the developer tools' command line (:mod:`riptdev.cli`)."""

import sys

from riptdev.cli import main

sys.exit(main())
