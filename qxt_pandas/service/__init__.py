"""Talking to the vendor: its wire protocol, the HTTP client and transport, and the engine that asks many
numbers at once within a rate, a budget and a controller's concurrency. Imports nothing from the stores
but the answer record and its journal format, nothing from the command, the console or the reports."""
