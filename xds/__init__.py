"""xds package."""
