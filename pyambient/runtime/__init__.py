"""Running the pieces of a local mesh: control plane, Envoy waypoints, backends (demo and tests)."""
