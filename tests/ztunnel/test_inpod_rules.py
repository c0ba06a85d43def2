"""The in-pod rule set and enrolment messages (pure): tables whose rows are named after the scenario."""

from __future__ import annotations

import pytest

from ztunnel.inpod import enrolment, rules

R = rules.pod_rules()
NAT = R.chains["nat"]
MANGLE = R.chains["mangle"]
NOTHING = ""
SAVED_WITH_OURS = (
    "*mangle\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
    + "\n".join(R.jumps["mangle"])
    + "\n"
    + "\n".join(sorted(MANGLE, key=lambda x: x.split()[1]))
    + "\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:ISTIO_OUTPUT - [0:0]\n:ISTIO_PRERT - [0:0]\n"
    + "\n".join(R.jumps["nat"])
    + "\n"
    + "\n".join(sorted(NAT, key=lambda x: x.split()[1]))
    + "\nCOMMIT\n"
)
SAVED_OTHER_CNI = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -d 10.0.0.1/32 -j ACCEPT\nCOMMIT\n"


def _first(chain_rules: list[str], *needles: str) -> str:
    for r in chain_rules:
        if all(n in r for n in needles):
            return r
    raise AssertionError(f"no rule with {needles}")


def _index(chain_rules: list[str], *needles: str) -> int:
    return chain_rules.index(_first(chain_rules, *needles))


@pytest.mark.parametrize(
    ("scenario", "rule_needles", "target"),
    [
        ("outbound_tcp_goes_to_15001", ("ISTIO_OUTPUT", "! -d 127.0.0.1/32", "-p tcp"), "REDIRECT --to-ports 15001"),
        (
            "inbound_plaintext_goes_to_15006",
            ("ISTIO_PRERT", "! -d 127.0.0.1/32", "-p tcp"),
            "REDIRECT --to-ports 15006",
        ),
        ("inbound_hbone_15008_left_alone", ("ISTIO_PRERT", "--dport 15008"), "-j ACCEPT"),
        ("kubelet_probe_source_not_captured_inbound", ("ISTIO_PRERT", "-s 169.254.7.127/32"), "-j ACCEPT"),
        ("replies_to_probe_not_captured_outbound", ("ISTIO_OUTPUT", "-d 169.254.7.127/32"), "-j ACCEPT"),
        ("pod_to_itself_over_lo_not_captured", ("ISTIO_OUTPUT", "-o lo"), "-j ACCEPT"),
    ],
)
def test_nat_rule(scenario: str, rule_needles: tuple[str, ...], target: str) -> None:
    assert target in _first(NAT, *rule_needles), scenario


@pytest.mark.parametrize(
    ("scenario", "chain", "excluded_by", "redirect"),
    [
        ("probe_excluded_before_inbound_redirect", "ISTIO_PRERT", "169.254.7.127", "--to-ports 15006"),
        ("hbone_excluded_before_inbound_redirect", "ISTIO_PRERT", "--dport 15008", "--to-ports 15006"),
        ("lo_excluded_before_outbound_redirect", "ISTIO_OUTPUT", "-o lo", "--to-ports 15001"),
        ("probe_replies_excluded_before_outbound_redirect", "ISTIO_OUTPUT", "169.254.7.127", "--to-ports 15001"),
    ],
)
def test_exclusions_come_before_redirects(scenario: str, chain: str, excluded_by: str, redirect: str) -> None:
    assert _index(NAT, chain, excluded_by) < _index(NAT, chain, redirect), scenario


@pytest.mark.parametrize(
    ("scenario", "needle"),
    [
        ("ztunnel_own_sockets_marked_0x539_skip_outbound_redirect", "--to-ports 15001"),
        ("ztunnel_own_sockets_marked_0x539_skip_inbound_redirect", "--to-ports 15006"),
    ],
)
def test_ztunnel_mark_excluded(scenario: str, needle: str) -> None:
    assert "-m mark ! --mark 0x539/0xfff" in _first(NAT, needle), scenario


def test_replies_to_transparent_connections_route_back_locally() -> None:
    assert "--mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff" in _first(MANGLE, "ISTIO_PRERT")
    assert "--restore-mark" in _first(MANGLE, "ISTIO_OUTPUT", "--mark 0x111/0xfff")
    assert R.ip_rule == ["rule", "add", "fwmark", "0x111/0xfff", "pref", "32764", "lookup", "100"]
    assert R.ip_route == ["route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", "100"]


def test_ports_follow_the_ztunnel_settings() -> None:
    r = rules.pod_rules(outbound_port=25001, plaintext_port=25006, hbone_port=25008)
    nat = "\n".join(r.chains["nat"])
    assert "--to-ports 25001" in nat and "--to-ports 25006" in nat and "--dport 25008" in nat


@pytest.mark.parametrize(
    ("scenario", "saved", "jumps_added", "installed"),
    [
        ("fresh_pod_gets_chains_and_jumps", NOTHING, True, False),
        ("pod_with_other_cni_rules_keeps_them_and_gets_ours", SAVED_OTHER_CNI, True, False),
        ("reinstall_after_restart_adds_no_duplicate_jumps", SAVED_WITH_OURS, False, True),
    ],
)
def test_install_is_idempotent(scenario: str, saved: str, jumps_added: bool, installed: bool) -> None:
    payload = rules.install_payload(R, saved)
    assert ("-A PREROUTING -j ISTIO_PRERT" in payload) is jumps_added, scenario
    assert ":ISTIO_OUTPUT - [0:0]" in payload  # declared: the chain is replaced atomically, never appended to
    assert "-A OUTPUT -d 10.0.0.1/32" not in payload  # never touches rules that are not ours
    assert rules.installed(R, saved) is installed


@pytest.mark.parametrize(
    ("scenario", "saved", "expect"),
    [
        ("nothing_installed_nothing_removed", NOTHING, None),
        ("other_cni_rules_untouched", SAVED_OTHER_CNI, None),
        ("ours_removed_jumps_then_chains", SAVED_WITH_OURS, "-D PREROUTING -j ISTIO_PRERT"),
    ],
)
def test_removal(scenario: str, saved: str, expect: str | None) -> None:
    payload = rules.removal_payload(R, saved)
    if expect is None:
        assert payload is None, scenario
    else:
        assert payload is not None and expect in payload and "-X ISTIO_OUTPUT" in payload, scenario
        assert payload.index("-D OUTPUT -j ISTIO_OUTPUT") < payload.index("-X ISTIO_OUTPUT")


def test_rules_of_an_older_version_are_not_installed() -> None:
    stale = SAVED_WITH_OURS.replace("--to-ports 15006", "--to-ports 15999")
    assert not rules.installed(R, stale)


@pytest.mark.parametrize(
    ("scenario", "data", "nfds", "error"),
    [
        ("add_without_fd", b'{"type":"add","uid":"u","namespace":"n","name":"p","ips":["10.0.0.1"]}', 0, "expects 1"),
        ("add_bad_ip", b'{"type":"add","uid":"u","namespace":"n","name":"p","ips":["x"]}', 1, "'x' is not an IP"),
        ("add_no_ips", b'{"type":"add","uid":"u","namespace":"n","name":"p","ips":[]}', 1, "non-empty list"),
        ("add_empty_uid", b'{"type":"add","uid":"","namespace":"n","name":"p","ips":["10.0.0.1"]}', 1, "'uid'"),
        ("unknown_field", b'{"type":"del","uid":"u","force":true}', 0, "unknown field(s) force"),
        ("unknown_type", b'{"type":"hello"}', 0, "unknown message type 'hello'"),
        ("not_json", b"\x00\x01", 0, "not a JSON message"),
        ("not_an_object", b"[1]", 0, "JSON object"),
        ("snapshot_with_fd", b'{"type":"snapshot-sent"}', 1, "expects 0"),
    ],
)
def test_enrolment_decode_refuses(scenario: str, data: bytes, nfds: int, error: str) -> None:
    with pytest.raises(enrolment.EnrolmentError, match=None) as e:
        enrolment.decode(data, list(range(100, 100 + nfds)))
    assert error in str(e.value), scenario


@pytest.mark.parametrize(
    ("scenario", "msg", "nfds"),
    [
        ("add", enrolment.AddPod("u", "ns", "p", ("10.0.0.1", "fd00::1")), 1),
        ("del_known_pod", enrolment.DelPod("u"), 0),
        ("del_with_netns_after_restart", enrolment.DelPod("u"), 1),
        ("snapshot_sent", enrolment.SnapshotSent(), 0),
        ("ack_error", enrolment.Ack("boom"), 0),
    ],
)
def test_enrolment_roundtrip(scenario: str, msg: enrolment.Message, nfds: int) -> None:
    assert enrolment.decode(enrolment.encode(msg), list(range(nfds))) == msg, scenario
