"""The redirection rules the ztunnel installs inside an enrolled pod's network namespace (pure).

What they do (the same marks and ports as Istio's in-pod mode):
- outbound TCP from the pod's apps → REDIRECT to the ztunnel's 15001 listener (opened in the pod's netns);
- inbound TCP to any port but 15008 → REDIRECT to 15006 (plaintext, policy-checked); 15008 (HBONE) is left alone;
- the ztunnel's own sockets carry SO_MARK 0x539 (1337) and are never redirected;
- the kubelet's probes arrive SNATed to 169.254.7.127 (done by the node agent on the host) and are not captured;
- loopback: traffic to 127.0.0.1 and a pod's connections to itself over `lo` are not captured;
- the ztunnel connects to the pod's apps with the original client's IP as source (IP_TRANSPARENT); the replies,
  addressed to that foreign IP, must come back to the ztunnel: the connection gets connmark 0x111 from the
  ztunnel's marked packets, the replies get it restored as the packet mark, and `ip rule fwmark 0x111 lookup 100`
  with `local 0.0.0.0/0 dev lo` in table 100 delivers them locally.

Install is one `iptables-restore --noflush` per table: declaring our chains in the payload flushes and refills
them in one commit, so re-installing (a ztunnel restart re-enrolling the pod) never leaves a gap in capture;
the jumps from the built-in chains are added only when `iptables-save` does not show them yet (idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass

OUTBOUND_PORT = 15001
INBOUND_PLAINTEXT_PORT = 15006
INBOUND_HBONE_PORT = 15008
ZTUNNEL_MARK = 0x539  # SO_MARK on every socket the ztunnel opens in a pod netns (Istio's PACKET_MARK 1337)
CONN_MARK = 0x111  # connmark of connections the ztunnel made in the pod; their replies route locally
MARK_MASK = 0xFFF
PROBE_SOURCE = "169.254.7.127"  # the kubelet's probe source after the node agent's SNAT (Istio's)
ROUTE_TABLE = 100
RULE_PRIORITY = 32764

PRERT = "ISTIO_PRERT"
OUTPUT = "ISTIO_OUTPUT"


@dataclass(frozen=True)
class PodRules:
    """Per table: our chains' rules (`-A CHAIN ...` lines) and the jumps from built-in chains into them."""

    chains: dict[str, list[str]]
    jumps: dict[str, list[str]]
    ip_rule: list[str]
    ip_route: list[str]


def pod_rules(
    *,
    outbound_port: int = OUTBOUND_PORT,
    plaintext_port: int = INBOUND_PLAINTEXT_PORT,
    hbone_port: int = INBOUND_HBONE_PORT,
) -> PodRules:
    mark = f"0x{ZTUNNEL_MARK:x}/0x{MARK_MASK:x}"
    cmark = f"0x{CONN_MARK:x}/0x{MARK_MASK:x}"
    mangle = [
        f"-A {PRERT} -m mark --mark {mark} -j CONNMARK --set-xmark {cmark}",
        f"-A {OUTPUT} -m connmark --mark {cmark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
    ]
    nat = [
        f"-A {PRERT} -s {PROBE_SOURCE}/32 -p tcp -j ACCEPT",
        f"-A {PRERT} -p tcp -m tcp --dport {hbone_port} -j ACCEPT",
        f"-A {PRERT} ! -d 127.0.0.1/32 -p tcp -m mark ! --mark {mark} -j REDIRECT --to-ports {plaintext_port}",
        f"-A {OUTPUT} -d {PROBE_SOURCE}/32 -p tcp -j ACCEPT",
        f"-A {OUTPUT} -p tcp -m mark --mark {cmark} -j ACCEPT",
        f"-A {OUTPUT} ! -d 127.0.0.1/32 -o lo -j ACCEPT",
        f"-A {OUTPUT} ! -d 127.0.0.1/32 -p tcp -m mark ! --mark {mark} -j REDIRECT --to-ports {outbound_port}",
    ]
    jumps = [f"-A PREROUTING -j {PRERT}", f"-A OUTPUT -j {OUTPUT}"]
    return PodRules(
        chains={"mangle": mangle, "nat": nat},
        jumps={"mangle": list(jumps), "nat": list(jumps)},
        ip_rule=["rule", "add", "fwmark", cmark, "pref", str(RULE_PRIORITY), "lookup", str(ROUTE_TABLE)],
        ip_route=["route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", str(ROUTE_TABLE)],
    )


def saved_tables(saved: str) -> dict[str, list[str]]:
    """`iptables-save` output → lines per table (chain declarations and rules, without counters)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in saved.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = out.setdefault(line[1:], [])
        elif current is not None and line and line != "COMMIT" and not line.startswith("#"):
            current.append(line)
    return out


def install_payload(rules: PodRules, saved: str) -> str:
    """The `iptables-restore --noflush` input that makes the pod's tables hold exactly our rules, given what
    `iptables-save` shows now: our chains are declared (so replaced atomically), missing jumps appended."""
    have = saved_tables(saved)
    parts = []
    for table, chain_rules in rules.chains.items():
        lines = [f":{PRERT} - [0:0]", f":{OUTPUT} - [0:0]", *chain_rules]
        lines += [j for j in rules.jumps[table] if j not in have.get(table, [])]
        parts.append("\n".join([f"*{table}", *lines, "COMMIT"]))
    return "\n".join(parts) + "\n"


def removal_payload(rules: PodRules, saved: str) -> str | None:
    """The `iptables-restore --noflush` input that removes our jumps and chains (only what exists), or None
    when nothing of ours is installed."""
    have = saved_tables(saved)
    parts = []
    for table in rules.chains:
        lines = have.get(table, [])
        ours = [c for c in (PRERT, OUTPUT) if any(x.startswith(f":{c} ") for x in lines)]
        jumps = [j for j in rules.jumps[table] if j in lines]
        if not ours and not jumps:
            continue
        body = ["-D" + j[2:] for j in jumps]
        body += [f":{c} - [0:0]" for c in ours] + [f"-X {c}" for c in ours]
        parts.append("\n".join([f"*{table}", *body, "COMMIT"]))
    return "\n".join(parts) + "\n" if parts else None


def installed(rules: PodRules, saved: str) -> bool:
    """True when `iptables-save` shows exactly our rules and jumps (what a re-enrolment can keep as is)."""
    have = saved_tables(saved)
    for table, chain_rules in rules.chains.items():
        lines = have.get(table, [])
        if any(j not in lines for j in rules.jumps[table]):
            return False
        for chain in (PRERT, OUTPUT):  # iptables-save lists chains in its own order; rules keep theirs
            prefix = f"-A {chain} "
            if [x for x in lines if x.startswith(prefix)] != [x for x in chain_rules if x.startswith(prefix)]:
                return False
    return True
