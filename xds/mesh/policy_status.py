"""Istio's status conditions on AuthorizationPolicies in ambient mode, as a pure function of the mesh.

`ZtunnelAccepted` is written on policies the ztunnels enforce (no targetRefs), `WaypointAccepted` on
policies attached to waypoints with targetRefs; reasons and messages follow istiod's. Both modes derive
them from here: cluster mode writes them to the object's status, local mode logs them once per change.
"""

from __future__ import annotations

from collections.abc import Mapping

from xds.mesh import binding
from xds.mesh.model import WAYPOINT_CLASS, AuthorizationPolicy, Mesh, PolicyAction, PolicyCondition

ZTUNNEL_ACCEPTED = "ZtunnelAccepted"
WAYPOINT_ACCEPTED = "WaypointAccepted"

ACCEPTED = "Accepted"
UNSUPPORTED_VALUE = "UnsupportedValue"
TARGET_NOT_FOUND = "TargetNotFound"
ANCESTOR_NOT_BOUND = "AncestorNotBound"
INVALID = "Invalid"

_HTTP_RULE = (
    "ztunnel does not support HTTP attributes (found: {found}). "
    "In ambient mode you must use a waypoint proxy to enforce HTTP rules. {consequence}"
)
_ALLOW_CONSEQUENCE = "Within an ALLOW policy, rules matching HTTP attributes are omitted. " + (
    "This will be more restrictive than requested."
)
_DENY_CONSEQUENCE = "DENY policy with HTTP attributes is enforced without the HTTP rules. " + (
    "This will be more restrictive than requested."
)

_ALLOW_SNI = "rules using it are omitted. This will be more restrictive than requested."
_DENY_SNI = "rules are enforced without it. This will be more restrictive than requested."


def ztunnel_condition(policy: AuthorizationPolicy) -> PolicyCondition | None:
    """The ztunnel's view: None for policies with targetRefs (waypoints enforce those)."""
    if policy.target_refs:
        return None
    if policy.action in (PolicyAction.AUDIT, PolicyAction.CUSTOM):
        return PolicyCondition(
            ZTUNNEL_ACCEPTED, False, UNSUPPORTED_VALUE, f"ztunnel does not support the {policy.action.value} action"
        )
    found = sorted({f for rule in policy.rules for f in rule.http_fields})
    if found:
        consequence = _DENY_CONSEQUENCE if policy.action is PolicyAction.DENY else _ALLOW_CONSEQUENCE
        message = _HTTP_RULE.format(found=", ".join(found), consequence=consequence)
        return PolicyCondition(ZTUNNEL_ACCEPTED, True, UNSUPPORTED_VALUE, message)
    return PolicyCondition(ZTUNNEL_ACCEPTED, True, ACCEPTED, "attached to ztunnel")


def _target_binding(mesh: Mesh, policy: AuthorizationPolicy, kind: str, name: str) -> tuple[bool, str, str]:
    """(bound, reason, message) for one targetRef, as istiod's WaypointPolicyStatusCollection."""
    key = f"{policy.namespace}/{name}"
    if kind == "GatewayClass":
        if policy.namespace != mesh.root_namespace:
            return (
                False,
                INVALID,
                f"AuthorizationPolicy must be in the root namespace `{mesh.root_namespace}` when referencing a "
                "GatewayClass",
            )
        if name != WAYPOINT_CLASS:
            return False, TARGET_NOT_FOUND, "not bound"
        return True, ACCEPTED, f"bound to {name}"
    if kind == "Gateway":
        if mesh.waypoint(policy.namespace, name) is None:
            return False, TARGET_NOT_FOUND, "not bound"
        return True, ACCEPTED, f"bound to {key}"
    service = mesh.service(policy.namespace, name)
    if service is None:
        return False, TARGET_NOT_FOUND, f"Service {key} was not found"
    waypoint = binding.service_waypoint(mesh, service)
    if waypoint is None:
        return False, ANCESTOR_NOT_BOUND, f"Service {key} is not bound to a waypoint"
    return True, ACCEPTED, f"bound to {waypoint.namespace}/{waypoint.name}"


def waypoint_condition(mesh: Mesh, policy: AuthorizationPolicy) -> PolicyCondition | None:
    """The waypoints' view: None for policies without targetRefs."""
    if not policy.target_refs:
        return None
    results = [_target_binding(mesh, policy, t.kind, t.name) for t in policy.target_refs]
    bound = [message for ok, _, message in results if ok]
    if not bound:
        _, reason, message = results[0]
        return PolicyCondition(WAYPOINT_ACCEPTED, False, reason, message)
    if policy.action is PolicyAction.CUSTOM:
        # No extension provider can be configured here (no meshConfig.extensionProviders): like istiod with
        # an unknown provider, the waypoint denies the requests the policy matches instead of skipping it.
        return PolicyCondition(
            WAYPOINT_ACCEPTED,
            False,
            INVALID,
            f"CUSTOM provider {policy.provider!r} is not configured (no extension providers): requests matching "
            "this policy are denied",
        )
    if any(c.key == "connection.sni" for rule in policy.rules for c in rule.conditions):
        consequence = _ALLOW_SNI if policy.action is PolicyAction.ALLOW else _DENY_SNI
        return PolicyCondition(
            WAYPOINT_ACCEPTED, True, UNSUPPORTED_VALUE, f"{'; '.join(bound)}; connection.sni is not available at "
            f"waypoints here: {consequence}"
        )
    return PolicyCondition(WAYPOINT_ACCEPTED, True, ACCEPTED, "; ".join(bound))


def policy_conditions(mesh: Mesh) -> Mapping[str, tuple[PolicyCondition, ...]]:
    """`namespace/name` -> the conditions Istio would write on that policy."""
    out: dict[str, tuple[PolicyCondition, ...]] = {}
    for policy in mesh.policies:
        conditions = [c for c in (ztunnel_condition(policy), waypoint_condition(mesh, policy)) if c is not None]
        out[policy.key] = tuple(conditions)
    return out
