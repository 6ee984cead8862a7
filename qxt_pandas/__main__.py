"""``python -m qxt_pandas``: the ``qxt`` command, for where its script is not on PATH."""

from .cli import exit_with, main

exit_with(main())
