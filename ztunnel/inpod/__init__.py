"""In-pod capture: the ztunnel enters each enrolled pod's network namespace, installs the redirection rules
there and serves that pod from listeners opened inside it (see docs/ztunnel.md, "In-pod capture")."""
