"""``python -m riptphone``: the same as the ``ript-phone`` command."""

import sys

from riptphone.cli import main

sys.exit(main())
