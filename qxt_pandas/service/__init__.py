"""Talking to the vendor: its wire protocol, the answer record (``answers``), the HTTP client and transport,
and the engine that asks many numbers at once within a rate, a budget and a controller's concurrency. Imports
nothing from the stores, the command, the console or the reports (tests/test_layout.py)."""
