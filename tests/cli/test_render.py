# ruff: noqa: E501  (Go reference data is kept on single lines)
"""Go formatting helpers: tabwriter, pdqsort, encoding/json and go-yaml emulation."""

from __future__ import annotations

import random

import pytest

from pyambient.render.gojson import format_float, marshal_indent, quote
from pyambient.render.gosort import sort_slice
from pyambient.render.goyaml import (
    format_float_g,
    json_text_to_yaml,
    key_less,
    resolves_to_non_string,
    to_yaml,
)
from pyambient.render.tabwriter import TabWriter

TABWRITER = [
    ("columns-padded-last-raw", 1, "a\tbb\tc\naaa\tb\tcc\n", "a   bb c\naaa b  cc\n"),
    ("empty-middle-cell-padded", 5, "x\t\ty\n", "x          y\n"),
    ("trailing-empty-last-cell", 5, "NAME\tDR\nagent\t\n", "NAME      DR\nagent     \n"),
    ("runes-not-bytes", 1, "é\tx\nab\ty\n", "é  x\nab y\n"),
    ("line-without-tab-flushes", 1, "a\tb\nplain\nlonger\tc\n", "a b\nplain\nlonger c\n"),
    ("block-ends-at-shorter-line", 1, "a\tb\tc\nd\te\nfff\tg\th\n", "a   b c\nd   e\nfff g h\n"),
    ("no-final-newline", 1, "a\tb", "a b"),
]


@pytest.mark.parametrize(
    ("padding", "text", "expected"), [c[1:] for c in TABWRITER], ids=[c[0] for c in TABWRITER]
)
def test_tabwriter(padding: int, text: str, expected: str) -> None:
    w = TabWriter(0, 8, padding)
    w.write(text)
    assert w.getvalue() == expected


@pytest.mark.parametrize("n", [0, 1, 5, 12, 13, 49, 50, 51, 200, 1000])
def test_pdqsort_sorts(n: int) -> None:
    rnd = random.Random(n)
    items = [rnd.randrange(n // 3 + 1) for _ in range(n)]
    sort_slice(items, lambda a, b: a < b)
    assert items == sorted(items)


def test_pdqsort_small_slices_are_insertion_sort_and_stable() -> None:
    items = [(1, "a"), (0, "b"), (1, "c"), (0, "d")]
    sort_slice(items, lambda a, b: a[0] < b[0])
    assert items == [(0, "b"), (0, "d"), (1, "a"), (1, "c")]


def test_pdqsort_non_order_comparator_matches_go_insertion_semantics() -> None:
    # istioctl's route sort: non-numeric names never compare less
    names = ["b", "10", "a", "9", "x"]
    sort_slice(names, lambda a, b: a.isdigit() and b.isdigit() and int(a) < int(b))
    assert names == ["b", "10", "a", "9", "x"]


FLOATS = [
    (100.0, "100"),
    (0.5, "0.5"),
    (1e-07, "1e-7"),
    (1e21, "1e+21"),
    (123456789.0, "123456789"),
    (-0.25, "-0.25"),
]


@pytest.mark.parametrize(("value", "expected"), FLOATS)
def test_json_float_format(value: float, expected: str) -> None:
    assert format_float(value) == expected


def test_json_marshal_indent_escapes_html_and_keeps_empty_containers_inline() -> None:
    assert marshal_indent({"a": "<&>", "b": [], "c": {}, "d": [1, True, None]}) == (
        '{\n    "a": "\\u003c\\u0026\\u003e",\n    "b": [],\n    "c": {},\n    "d": [\n        1,\n'
        "        true,\n        null\n    ]\n}"
    )
    assert quote("a\u2028\x01") == '"a\\u2028\\u0001"'


def test_yaml_key_order_is_go_yaml_natural_order() -> None:
    keys = ["name", "@type", "port10", "port9", "ISTIO_METAJSON", "ISTIO_META_X", "b", "B"]
    assert (
        key_less("@type", "name")
        and key_less("port9", "port10")
        and key_less("ISTIO_META_X", "ISTIO_METAJSON")
    )
    out = to_yaml(dict.fromkeys(keys, 1))
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "'@type'",
        "B",
        "ISTIO_META_X",
        "ISTIO_METAJSON",
        "b",
        "name",
        "port9",
        "port10",
    ]


QUOTING = [
    ("1605", True),
    ("2022-12-08T11:03:53.361Z", True),
    ("2022-12-08T09:07:09Z/10", False),
    ("y", True),
    ("off", True),
    ("", True),
    ("0x1F", True),
    ("1_000", True),
    ("1:20", True),
    ("1.5e3", True),
    ("08", True),
    ("hello", False),
    ("10.0.0.1", False),
    ("v1", False),
]


@pytest.mark.parametrize(("text", "non_string"), QUOTING)
def test_yaml_resolver(text: str, non_string: bool) -> None:
    assert resolves_to_non_string(text) is non_string


def test_yaml_scalars() -> None:
    assert to_yaml(
        {"a": "1605", "b": "*", "c": "x\ny", "d": 1.0, "e": 1e-07, "f": 1e6, "g": [], "h": None}
    ) == ("a: \"1605\"\nb: '*'\nc: |-\n  x\n  y\nd: 1\ne: 1e-07\nf: 1e+06\ng: []\nh: null\n")
    assert format_float_g(123456.0) == "123456" and format_float_g(0.0001) == "0.0001"
    assert to_yaml({"l": [{"a": 1, "b": 2}]}) == "l:\n- a: 1\n  b: 2\n"


# Tie orders produced by Go 1.26 `sort.Slice(xs, func(a, b) bool { return xs[a].key < xs[b].key })`:
# (keys, resulting order of original indices). They exercise breakPatterns, the ninther and partitionEqual.
GO_TIE_ORDERS: list[tuple[list[int], list[int]]] = [
    ([3, 0, 2, 1, 0, 3, 0, 3, 1, 0, 3, 1, 0, 2], [9, 12, 1, 6, 4, 8, 3, 11, 2, 13, 5, 0, 10, 7]),
    (
        [
            0,
            2,
            0,
            1,
            3,
            3,
            3,
            1,
            0,
            0,
            0,
            2,
            0,
            3,
            0,
            3,
            2,
            1,
            3,
            2,
            2,
            2,
            3,
            0,
            2,
            0,
            2,
            2,
            3,
            1,
            2,
            0,
            2,
            2,
            3,
            3,
            0,
            3,
            3,
            0,
            3,
            3,
            3,
            2,
            3,
            3,
            0,
            1,
            1,
            0,
            0,
            3,
            3,
            1,
            3,
            1,
            0,
            3,
            3,
            2,
        ],
        [
            12,
            50,
            2,
            23,
            31,
            36,
            49,
            39,
            8,
            9,
            56,
            10,
            0,
            46,
            14,
            25,
            47,
            17,
            48,
            7,
            53,
            55,
            29,
            3,
            16,
            11,
            26,
            27,
            59,
            1,
            30,
            21,
            32,
            33,
            24,
            43,
            20,
            19,
            13,
            34,
            40,
            41,
            42,
            35,
            44,
            45,
            18,
            6,
            37,
            38,
            15,
            51,
            52,
            5,
            54,
            4,
            22,
            57,
            58,
            28,
        ],
    ),
    (
        [
            8,
            6,
            4,
            8,
            8,
            7,
            6,
            6,
            3,
            4,
            4,
            0,
            0,
            2,
            7,
            8,
            7,
            5,
            3,
            4,
            7,
            7,
            8,
            7,
            6,
            8,
            0,
            4,
            5,
            7,
            1,
            7,
            8,
            4,
            7,
            2,
            6,
            7,
            1,
            4,
            7,
            5,
            1,
            3,
            6,
            2,
            7,
            0,
            1,
            0,
            7,
            8,
            1,
            3,
            3,
            1,
            0,
            8,
            4,
            5,
            2,
            0,
            5,
            7,
            2,
            8,
            3,
            7,
            2,
            8,
            4,
            1,
            6,
            2,
            2,
            4,
            8,
            6,
            6,
            2,
            8,
            3,
            6,
            0,
            1,
            6,
            1,
            0,
            5,
            5,
            0,
            0,
            8,
            7,
            5,
            4,
            7,
            5,
            1,
            7,
            7,
            2,
            2,
            8,
            3,
            6,
            5,
            7,
            3,
            1,
            8,
            6,
            0,
            3,
            2,
            0,
            8,
            0,
            7,
            3,
            7,
            0,
            2,
            8,
            3,
            8,
            2,
            2,
            2,
            6,
        ],
        [
            121,
            87,
            47,
            49,
            112,
            56,
            83,
            90,
            26,
            91,
            61,
            11,
            12,
            115,
            117,
            30,
            42,
            71,
            86,
            48,
            38,
            98,
            84,
            109,
            52,
            55,
            126,
            74,
            101,
            127,
            79,
            128,
            114,
            60,
            13,
            35,
            102,
            122,
            73,
            64,
            68,
            45,
            43,
            54,
            81,
            8,
            124,
            18,
            66,
            108,
            104,
            119,
            113,
            53,
            9,
            39,
            33,
            2,
            58,
            75,
            27,
            10,
            70,
            95,
            19,
            41,
            89,
            88,
            106,
            94,
            62,
            17,
            28,
            97,
            59,
            44,
            1,
            77,
            78,
            111,
            7,
            6,
            24,
            105,
            129,
            85,
            72,
            82,
            36,
            31,
            120,
            5,
            14,
            93,
            16,
            67,
            96,
            20,
            63,
            99,
            100,
            21,
            118,
            23,
            50,
            46,
            40,
            107,
            37,
            34,
            29,
            32,
            0,
            110,
            25,
            103,
            116,
            22,
            51,
            57,
            80,
            65,
            69,
            123,
            15,
            125,
            92,
            76,
            4,
            3,
        ],
    ),
]


@pytest.mark.parametrize(("keys", "expected"), GO_TIE_ORDERS, ids=["n14", "n60", "n130"])
def test_pdqsort_tie_order_matches_go(keys: list[int], expected: list[int]) -> None:
    items = list(enumerate(keys))
    sort_slice(items, lambda a, b: a[1] < b[1])
    assert [i for i, _ in items] == expected


def test_yaml_edge_cases_match_sigs_k8s_yaml() -> None:
    """Expected text produced by sigs.k8s.io/yaml v1.6.0 `JSONToYAML` (go-yaml v2.4.2) from the same JSON."""
    text = (
        '{"s": ["<<", "=", "2022-13-45", "1__0", "emoji \U0001f600", "tab\\tand a long line of words tab\\tand a '
        'long line of words tab\\tand a long line of words ", "keep\\n\\n"], "n": [100000000000000000000, 1e-05], '
        '"": 1}'
    )
    assert json_text_to_yaml(text) == (
        '"": 1\n"n":\n- 1e+20\n- 1e-05\ns:\n- <<\n- =\n- 2022-13-45\n- "1__0"\n- "emoji \\U0001F600"\n'
        '- "tab\\tand a long line of words tab\\tand a long line of words tab\\tand a long line\n  of words "\n'
        "- |+\n  keep\n\n"
    )
