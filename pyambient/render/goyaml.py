"""`sigs.k8s.io/yaml.JSONToYAML` (go-yaml v2) output, reproduced with PyYAML.

Key order is go-yaml's `keyList.Less` (natural order, non-letters before letters); strings that go-yaml
would read back as another type are double-quoted; strings with newlines use literal style; sequences
are indentless; long scalars fold at 80 columns.
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import yaml

from pyambient.render.gojson import GoNumber


def _is_letter(c: str) -> bool:
    return c.isalpha()


def _is_digit(c: str) -> bool:
    return c.isdigit()


def key_less(a: str, b: str) -> bool:
    """go-yaml v2 `keyList.Less` for two string keys."""
    ar, br = a, b
    for i in range(min(len(ar), len(br))):
        if ar[i] == br[i]:
            continue
        al, bl = _is_letter(ar[i]), _is_letter(br[i])
        if al and bl:
            return ar[i] < br[i]
        if al or bl:
            return bl
        an = bn = 0
        if ar[i] == "0" or br[i] == "0":
            j = i - 1
            while j >= 0 and _is_digit(ar[j]):
                if ar[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(ar) and _is_digit(ar[ai]):
            an = an * 10 + (ord(ar[ai]) - ord("0"))
            ai += 1
        bi = i
        while bi < len(br) and _is_digit(br[bi]):
            bn = bn * 10 + (ord(br[bi]) - ord("0"))
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ar[i] < br[i]
    return len(ar) < len(br)


def _key_cmp(a: str, b: str) -> int:
    if key_less(a, b):
        return -1
    if key_less(b, a):
        return 1
    return 0


_BOOL_NULL = {
    "y",
    "Y",
    "yes",
    "Yes",
    "YES",
    "n",
    "N",
    "no",
    "No",
    "NO",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "",
    "~",
    "null",
    "Null",
    "NULL",
    ".inf",
    ".Inf",
    ".INF",
    "+.inf",
    "+.Inf",
    "+.INF",
    "-.inf",
    "-.Inf",
    "-.INF",
    ".nan",
    ".NaN",
    ".NAN",
}
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
# strconv.ParseInt/ParseUint(s, 0, 64) syntax, after go-yaml removed every "_"
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)$")
# strconv.ParseFloat syntax (decimal, hex, inf, infinity, nan)
_GO_FLOAT = re.compile(
    r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?"
    r"|0[xX]([0-9a-fA-F]+(\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][-+]?[0-9]+"
    r"|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])$"
)
_TS_LAYOUTS = (
    re.compile(r"^\d{4}-\d{1,2}-\d{1,2}[Tt]\d{1,2}:\d{1,2}:\d{1,2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"),
    re.compile(r"^\d{4}-\d{1,2}-\d{1,2} \d{1,2}:\d{1,2}:\d{1,2}(\.\d+)?$"),
    re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$"),
)


def _is_timestamp(s: str) -> bool:
    if not any(p.match(s) for p in _TS_LAYOUTS):
        return False
    date = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", s)
    assert date is not None
    try:
        datetime(int(date.group(1)), int(date.group(2)), int(date.group(3)))
    except ValueError:
        return False
    return True


def resolves_to_non_string(s: str) -> bool:
    """Would go-yaml v2 read this plain scalar back as something other than a string?"""
    if s in _BOOL_NULL:
        return True
    if _BASE60.match(s):  # go-yaml's encoder quotes YAML 1.1 base-60 floats too
        return True
    if not s or s[0] not in "0123456789+-.":
        return False
    if s[0] == ".":
        return bool(_GO_FLOAT.match(s))  # strconv.ParseFloat
    if _is_timestamp(s):
        return True
    plain = s.replace("_", "")
    if _GO_INT.match(plain) and _fits_64(plain):
        return True
    return bool(_YAML_FLOAT.match(plain)) or bool(re.match(r"^-?0b[01]+$", plain))


def _fits_64(text: str) -> bool:
    body = text.lstrip("+-")
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        value = int(body, 8)  # a leading 0 means octal
    else:
        value = int(body, 0)
    if text.startswith("-"):
        value = -value
    return -(2**63) <= value < 2**64


def format_float_g(f: float) -> str:
    """Go `strconv.FormatFloat(f, 'g', -1, 64)` plus go-yaml's special values."""
    if f != f:
        return ".nan"
    if f in (float("inf"), float("-inf")):
        return ".inf" if f > 0 else "-.inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    sign, digits, exp = Decimal(repr(f)).normalize().as_tuple()
    ds = "".join(str(d) for d in digits)
    point = len(ds) + int(exp)  # digits before the decimal point
    e = point - 1
    s = "-" if sign else ""
    if e < -4 or e >= 6:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{s}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if point <= 0:
        return s + "0." + "0" * (-point) + ds
    if point >= len(ds):
        return s + ds + "0" * (point - len(ds))
    return s + ds[:point] + "." + ds[point:]


_PLAIN_INT = re.compile(r"^-?[0-9]+$")
_PLAIN_FLOAT = re.compile(r"^(-?[0-9]+(\.[0-9]+)?(e[-+][0-9]+)?|-?\.inf|\.nan)$")
_NOT_PRINTABLE_IN_GO = re.compile("[\x85\ufeff\U00010000-\U0010ffff]")


class _Dumper(yaml.SafeDumper):
    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """Only the forms the non-string representers below write resolve to non-strings.

        A string that go-yaml would read as another type is already forced into double quotes, so every
        other plain scalar is a string, whatever PyYAML's YAML 1.1 resolver thinks (`=`, `2022-13-45`).
        """
        if kind is yaml.ScalarNode and implicit[0]:
            if value in ("true", "false"):
                return "tag:yaml.org,2002:bool"
            if value == "null":
                return "tag:yaml.org,2002:null"
            if _PLAIN_INT.match(value):
                return "tag:yaml.org,2002:int"
            if _PLAIN_FLOAT.match(value):
                return "tag:yaml.org,2002:float"
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def check_simple_key(self) -> bool:
        """go-yaml: any single-line scalar of at most 128 bytes is a simple key (the empty one too)."""
        if isinstance(self.event, yaml.ScalarEvent):
            if self.analysis is None:
                self.analysis = self.analyze_scalar(self.event.value)
            return not self.analysis.multiline and len(self.analysis.scalar.encode()) <= 128
        return bool(super().check_simple_key())

    def write_literal(self, text: str) -> None:
        super().write_literal(text)
        self.open_ended = False  # go-yaml writes no "..." document end after a `|+` block

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        """libyaml/go-yaml `write_double_quoted_scalar`: escapes, and folding only at single spaces."""
        self.write_indicator('"', True)
        spaces = False
        i = 0
        while i < len(text):
            ch = text[i]
            if not _go_printable(ch) or ch in '"\\\r\n\x85\u2028\u2029':
                self._write(_go_escape(ch))
                spaces = False
            elif ch == " ":
                if split and not spaces and self.column > self.best_width and 0 < i < len(text) - 1:
                    self.write_indent()
                    if text[i + 1] == " ":
                        self._write("\\")
                else:
                    self._write(ch)
                spaces = True
            else:
                self._write(ch)
                spaces = False
            i += 1
        self.write_indicator('"', False)

    def _write(self, data: str) -> None:
        self.column += len(data)
        self.stream.write(data.encode(self.encoding) if self.encoding else data)


_GO_ESCAPES = {
    "\x00": "0",
    "\x07": "a",
    "\x08": "b",
    "\t": "t",
    "\n": "n",
    "\x0b": "v",
    "\x0c": "f",
    "\r": "r",
    "\x1b": "e",
    '"': '"',
    "\\": "\\",
    "\x85": "N",
    "\xa0": "_",
    "\u2028": "L",
    "\u2029": "P",
}


def _go_printable(ch: str) -> bool:
    o = ord(ch)
    return ch == "\n" or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)


def _go_escape(ch: str) -> str:
    if ch in _GO_ESCAPES:
        return "\\" + _GO_ESCAPES[ch]
    o = ord(ch)
    if o <= 0xFF:
        return f"\\x{o:02X}"
    if o <= 0xFFFF:
        return f"\\u{o:04X}"
    return f"\\U{o:08X}"


def _repr_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    keys = sorted(data, key=functools.cmp_to_key(_key_cmp))
    return dumper.represent_mapping("tag:yaml.org,2002:map", [(k, data[k]) for k in keys])


def _repr_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if resolves_to_non_string(data) or _NOT_PRINTABLE_IN_GO.search(data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def _repr_float(dumper: yaml.SafeDumper, data: float) -> yaml.Node:
    text = format_float_g(data)
    # use whatever tag PyYAML's resolver gives the text, so that it is written plain
    return dumper.represent_scalar(dumper.resolve(yaml.ScalarNode, text, (True, False)), text)


def _repr_none(dumper: yaml.SafeDumper, data: None) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:null", "null")


_Dumper.add_representer(dict, _repr_dict)
_Dumper.add_representer(str, _repr_str)
_Dumper.add_representer(float, _repr_float)
_Dumper.add_representer(type(None), _repr_none)


def _from_plain(value: Any) -> Any:
    if isinstance(value, GoNumber):
        text = str(value)
        if text.startswith('"'):
            return json.loads(text)
        if any(c in text for c in ".eE"):
            return float(text)
        return _json_int(int(text))
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return _json_int(value)
    if isinstance(value, dict):
        return {str(k): _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def _json_int(value: int) -> int | float:
    """go-yaml reads a JSON integer beyond int64/uint64 as a float."""
    return value if -(2**63) <= value < 2**64 else float(value)


def to_yaml(value: Any) -> str:
    """YAML text for plain data (as `JSONToYAML` would print the equivalent JSON)."""
    data = _from_plain(value)
    if isinstance(data, dict) and not data:
        return "{}\n"
    if isinstance(data, list) and not data:
        return "[]\n"
    return yaml.dump(
        data, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, width=80, sort_keys=False
    )


def json_text_to_yaml(text: str) -> str:
    """`JSONToYAML(text)`."""
    return to_yaml(json.loads(text))
