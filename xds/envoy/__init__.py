"""Envoy configuration builders (envoy-data-plane messages)."""
