"""Test harness: real Envoy, our control plane, HBONE peers."""
