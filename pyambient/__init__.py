"""pyambient package."""
