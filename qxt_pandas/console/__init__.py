"""``qxt serve``: a small web console for people who do not code (``app``: the Starlette app and its jobs, each
run as a ``qxt check`` child; ``_page/``: the page itself)."""
