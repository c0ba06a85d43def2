"""Subcommands of the `pyambient` CLI, one module each."""
