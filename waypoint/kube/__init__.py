"""Kubernetes API access: the REST client wrapper (api) and the list+watch informer (watch)."""
