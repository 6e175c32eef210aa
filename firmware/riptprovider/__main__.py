"""``python -m riptprovider``: the same as the ``ript-provider`` command."""

import sys

from riptprovider.cli import main

sys.exit(main())
