"""Cython hot path of the ztunnel. Imports no project code; only `ztunnel` imports it."""
