"""The mesh model and its sources (YAML files, Kubernetes objects)."""
