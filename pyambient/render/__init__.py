"""Output helpers that reproduce Go formatting (tabwriter, sort, JSON, YAML) byte for byte."""
