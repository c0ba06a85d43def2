"""In-pod capture on a node: the CNI plugin (plugin.py, installed on the host), the node agent (agent.py)
and the agent's pure decisions (policy.py). See docs/ztunnel.md, "In-pod capture"."""
