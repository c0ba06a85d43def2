"""PeerAuthentication → what ztunnels enforce, the way istiod does it in ambient mode. Pure.

A ztunnel has no separate mTLS switch: istiod turns PeerAuthentication into L4 DENY policies over
connections without a peer identity (plaintext arriving on 15006), and lists on each workload which of
them apply to it (`pilot/pkg/serviceregistry/ambient/authorization.go`):

- `<root>/istio_converted_static_strict`, one static DENY `notPrincipals: [presence]`, pushed as soon as
  any PeerAuthentication exists, and referenced by every workload whose effective mode is STRICT;
- `<ns>/converted_peer_authentication_<name>` for a workload (selector) policy with `portLevelMtls` whose
  ports differ from its effective mode: a DENY of plaintext on its STRICT ports, or of plaintext on every
  port except its PERMISSIVE ones (the parent's STRICT merged in), referenced instead of the static one.

Effective mode: workload > namespace > mesh (root namespace); UNSET inherits; at each level the oldest
policy wins. DISABLE counts as "not STRICT" (ambient always tunnels mesh traffic over mTLS; plaintext is
only ever refused, never required). A connection with an identity (HBONE) never matches these policies.
One deliberate difference (see `convert`): where istiod's port-level conditions, as written, would leave a
port the user made STRICT open to plaintext, we follow their stated intent and refuse it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy_data_plane.google.protobuf import Empty

from xds.mesh.model import ROOT_NAMESPACE, Mesh, MtlsMode, PeerAuthentication, Workload
from xds.workloadapi import Authorization, AuthzAction, AuthzScope, Clause, Match, Rule, StringMatch

STATIC_STRICT_NAME = "istio_converted_static_strict"  # '_' is illegal in Kubernetes names: no clash
CONVERTED_PREFIX = "converted_peer_authentication_"
_NOT_STRICT = (MtlsMode.PERMISSIVE, MtlsMode.DISABLE)


def _no_principal() -> Match:
    return Match(not_principals=[StringMatch(presence=Empty())])


def static_strict_policy(root_namespace: str = ROOT_NAMESPACE) -> Authorization:
    return Authorization(
        name=STATIC_STRICT_NAME,
        namespace=root_namespace,
        scope=AuthzScope.WORKLOAD_SELECTOR,
        action=AuthzAction.DENY,
        rules=[Rule(clauses=[Clause(matches=[_no_principal()])])],
    )


def converted_key(pa: PeerAuthentication) -> str:
    return f"{pa.namespace}/{CONVERTED_PREFIX}{pa.name}"


def _oldest(policies: Iterable[PeerAuthentication]) -> PeerAuthentication | None:
    return min(policies, key=lambda p: p.age_key, default=None)


def _namespace_wide(mesh: Mesh, namespace: str) -> PeerAuthentication | None:
    """The oldest policy without a selector in `namespace` (the mesh-wide one for the root namespace)."""
    return _oldest(p for p in mesh.peer_authentications_by_namespace.get(namespace, ()) if p.selector is None)


def _selects(pa: PeerAuthentication, workload: Workload) -> bool:
    return pa.selector is not None and all(workload.labels.get(k) == v for k, v in pa.selector.items())


def _levels(
    mesh: Mesh, workload: Workload, root: str
) -> tuple[PeerAuthentication | None, PeerAuthentication | None, PeerAuthentication | None]:
    """(mesh, namespace, workload) level policies that apply to the workload; oldest wins per level."""
    mesh_pa = _namespace_wide(mesh, root)
    ns_pa = _namespace_wide(mesh, workload.namespace) if workload.namespace != root else None
    wl_pa = None
    if workload.namespace != root:  # a selector policy in the root namespace applies to nothing (as in Istio)
        candidates = mesh.peer_authentications_by_namespace.get(workload.namespace, ())
        wl_pa = _oldest(p for p in candidates if _selects(p, workload))
    return mesh_pa, ns_pa, wl_pa


def workload_policy_keys(mesh: Mesh, workload: Workload, root: str = ROOT_NAMESPACE) -> list[str]:
    """The converted policies a workload lists in `authorization_policies` (Istio's
    `convertedSelectorPeerAuthentications`): the static STRICT one, its workload policy's port-level form,
    or neither."""
    mesh_pa, ns_pa, wl_pa = _levels(mesh, workload, root)
    strict = mesh_pa is not None and mesh_pa.mode is MtlsMode.STRICT
    if ns_pa is not None and ns_pa.mode is not MtlsMode.UNSET:
        strict = ns_pa.mode is MtlsMode.STRICT
    port_key = ""
    if wl_pa is not None:
        if wl_pa.mode is MtlsMode.STRICT:
            strict = True
        elif wl_pa.mode in _NOT_STRICT:
            strict = False
        ports = wl_pa.port_level.values()
        if ports:
            if wl_pa.mode is MtlsMode.STRICT:
                if any(m in _NOT_STRICT for m in ports):
                    port_key, strict = converted_key(wl_pa), False  # the converted form carries the STRICT default
            elif wl_pa.mode in _NOT_STRICT:
                if any(m is MtlsMode.STRICT for m in ports):
                    port_key = converted_key(wl_pa)
            elif strict:
                # UNSET under a STRICT parent: only a PERMISSIVE port is an exception here — a DISABLE port
                # stays under the static STRICT policy, exactly as istiod decides it.
                if any(m is MtlsMode.PERMISSIVE for m in ports):
                    port_key, strict = converted_key(wl_pa), False
            elif any(m is MtlsMode.STRICT for m in ports):
                port_key = converted_key(wl_pa)
    keys = set()
    if strict:
        keys.add(f"{root}/{STATIC_STRICT_NAME}")
    if port_key:
        keys.add(port_key)
    return sorted(keys)


def convert(
    pa: PeerAuthentication,
    ns_pa: PeerAuthentication | None,
    root_pa: PeerAuthentication | None,
    root: str = ROOT_NAMESPACE,
) -> Authorization | None:
    """Istio's `convertPeerAuthentication`: the DENY a workload policy with `portLevelMtls` becomes, or None
    when it needs none (not a workload policy, or every port already follows the effective mode)."""
    if pa.namespace == root or pa.selector is None or not pa.port_level:
        return None
    mode = pa.mode
    ns_mode = ns_pa.mode if ns_pa is not None else None
    root_mode = root_pa.mode if root_pa is not None else None
    # The mode the workload inherits: the namespace's, or the mesh's when the namespace has none or UNSET.
    # istiod's conditions mean exactly this (its comments say so), but two of them, as written, drop a
    # STRICT port under a STRICT mesh, or a whole policy under an UNSET namespace, so plaintext would get
    # through where the user asked for STRICT; we follow the stated intent and fail closed instead.
    parent_strict = ns_mode is MtlsMode.STRICT or (ns_mode in (None, MtlsMode.UNSET) and root_mode is MtlsMode.STRICT)
    clauses: list[Clause] = []  # AND-ed: one rule
    rules: list[Rule] = []  # OR-ed
    if mode is MtlsMode.STRICT:
        clauses.append(Clause(matches=[_no_principal()]))
    found_non_strict_port = False
    for port, port_mode in sorted(pa.port_level.items()):
        if port_mode is MtlsMode.STRICT:
            if mode is MtlsMode.STRICT or (mode is MtlsMode.UNSET and parent_strict):
                continue  # the workload's own or inherited STRICT enforces it already
            # its own rule (rules are OR-ed): plaintext to this port is denied
            no_principal_on_port = Match(not_principals=[StringMatch(presence=Empty())], destination_ports=[port])
            rules.append(Rule(clauses=[Clause(matches=[no_principal_on_port])]))
        elif port_mode in _NOT_STRICT:
            if mode in _NOT_STRICT:
                continue
            if mode is MtlsMode.UNSET and not parent_strict:
                continue  # not STRICT here and the effective policy is not STRICT either
            found_non_strict_port = True
            # deny plaintext unless it is for this port (no principal requirement in this clause)
            clauses.append(Clause(matches=[Match(not_destination_ports=[port])]))
        # an UNSET port follows the workload's mode: nothing to add
    if mode is MtlsMode.STRICT and not found_non_strict_port:
        return None  # plain STRICT: the static policy covers it
    if not clauses and not rules:
        return None
    if parent_strict and found_non_strict_port:  # merge the inherited STRICT: the static policy is not listed
        clauses.append(Clause(matches=[_no_principal()]))
    if clauses:
        rules.append(Rule(clauses=clauses))
    return Authorization(
        name=CONVERTED_PREFIX + pa.name,
        namespace=pa.namespace,
        scope=AuthzScope.WORKLOAD_SELECTOR,
        action=AuthzAction.DENY,
        rules=rules,
    )


def ztunnel_policies(mesh: Mesh, root: str = ROOT_NAMESPACE) -> Sequence[tuple[str, Authorization]]:
    """Every Authorization PeerAuthentication contributes: the static STRICT policy once any
    PeerAuthentication exists, and one converted policy per workload policy that needs it."""
    if not mesh.peer_authentications:
        return ()
    out = [(f"{root}/{STATIC_STRICT_NAME}", static_strict_policy(root))]
    root_pa = _namespace_wide(mesh, root)
    for pa in mesh.peer_authentications:
        converted = convert(pa, _namespace_wide(mesh, pa.namespace), root_pa, root)
        if converted is not None:
            out.append((converted_key(pa), converted))
    return out
