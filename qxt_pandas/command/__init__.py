"""The ``qxt`` command: its arguments and exit codes (``cli``), files in and out (``files``, ``outputs``), and a
check over a file of any size in two passes (``stream``, with ``_rowcodes`` keeping each row's number on disk)."""
