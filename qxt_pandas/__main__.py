"""``python -m qxt_pandas``: the ``qxt`` command, for where its script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
