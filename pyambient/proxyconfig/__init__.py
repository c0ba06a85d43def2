"""istioctl `proxy-config` re-implementation: one module per resource kind, rendering from JSON dicts."""
