"""Node's JSON.stringify, rebuilt: the bytes soketi signed for a direct invocation.

soketi signs JSON.stringify(payload) in Node, and a Lambda trigger hands us the parsed
payload, not those bytes. json.dumps with compact separators matches Node except for floats
(Node writes 1e-7, 5, 0 where Python writes 1e-07, 5.0, -0.0) and lone surrogates (Node
escapes them). Memory stays within about twice the output: text is encoded to bytes in
pieces of bounded size, and long strings are written in slices.

The rebuild runs before the signature can be checked, so whatever a forger sends is paid
for: `check_size` first bounds the payload's size and depth with a walk that builds
nothing, then `node_json` rebuilds.
"""
from __future__ import annotations

import json
import math
import re

from .errors import Reject

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Iterator
    from typing import Any

MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit, bytes
MAX_NESTING = 500  # levels of a directly invoked payload; the rebuild recurses per level


def check_size(payload: Any) -> None:
    """Reject(400) when the payload's JSON is larger than Lambda accepts or nested too deep:
    decided by a walk that builds nothing, before any rebuild is paid for."""
    if _json_size_at_least(payload) > MAX_INVOKE_PAYLOAD:
        raise Reject(400, "payload is larger than Lambda's 6 MB invocation limit")


def _json_values(value: Any) -> Iterator[Any]:
    """`value` and everything inside it, depth first. The walk keeps one iterator per level
    of nesting, so it holds nothing per item; Reject(400) past MAX_NESTING levels."""
    levels = [iter([value])]
    while levels:
        for item in levels[-1]:
            yield item
            kind = type(item)
            if kind is dict:
                levels.append(iter(item.values()))
                break
            if kind is list:
                levels.append(iter(item))
                break
        else:
            levels.pop()
            continue
        if len(levels) > MAX_NESTING:
            raise Reject(400, "payload is nested deeper than %d levels" % MAX_NESTING)


def _json_size_at_least(value: Any) -> int:
    """A lower bound of the JSON text's size in bytes, without building it."""
    size = 0
    for item in _json_values(value):
        kind = type(item)
        if kind is str:
            size += len(item) + 2
        elif kind is dict:
            size += 1 + len(item) + sum(map(len, item)) + 2 * len(item)  # keys quoted
        elif kind is list:
            size += 1 + len(item)  # brackets and commas
        else:
            size += 1  # numbers, true, false, null
    return size


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SURROGATE = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_SLICE = 65536  # characters of a long string, or items of a long list, written at once
_SMALL = 4096  # characters of a float-free object or list encoded in one call


def node_json(value: Any) -> bytes:
    """The UTF-8 bytes of Node's JSON.stringify(value), exactly, for a value parsed from JSON
    that Node wrote (so its keys are already in JavaScript's order)."""
    writer = _NodeJsonWriter()
    writer.write_value(value)
    return writer.getvalue()


def _small_without_floats(value: Any, limit: int) -> bool:
    """True when the value holds no float and its JSON stays under `limit` characters (a
    rough count), so encoding it at once is exact and costs little memory."""
    size = 0
    for item in _json_values(value):
        kind = type(item)
        if kind is float:
            return False
        size += 2
        if kind is str:
            size += len(item)
        elif kind is dict:
            size += sum(map(len, item))
        if size > limit:
            return False
    return True


class _NodeJsonWriter:
    """Collects JSON text in small str parts and turns them into UTF-8 bytes every 4096
    characters (or 256 parts), so memory holds the output about twice, never one object
    per item."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.buffered = 0  # characters in `parts`
        self.pieces: list[bytes] = []

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.buffered += len(text)
        if self.buffered >= 4096 or len(self.parts) >= 256:
            self.flush()

    def flush(self) -> None:
        self.pieces.append(_utf8("".join(self.parts)))
        self.parts.clear()
        self.buffered = 0

    def getvalue(self) -> bytes:
        self.flush()
        return b"".join(self.pieces)

    def write_value(self, value: Any) -> None:
        kind = type(value)
        # (each member takes at least 2 characters, so a long container is never small)
        if kind in (dict, list) and len(value) * 2 < _SMALL and \
                _small_without_floats(value, _SMALL):
            self.write(_COMPACT.encode(value))  # a small float-free part: one encoder call
            return
        if kind is dict:
            self.write("{")
            for index, (key, item) in enumerate(value.items()):
                comma = "," if index else ""
                self.write(comma + _COMPACT.encode(key) + ":")
                self.write_value(item)
            self.write("}")
        elif kind is list:
            self.write("[")
            for start in range(0, len(value), 64):
                if start:
                    self.write(",")
                self.write_items(value[start:start + 64])
            self.write("]")
        elif kind is str and len(value) > _SLICE:
            self.write_long_string(value)
        else:
            self.write(_js_scalar(value))

    def write_items(self, items: list[Any]) -> None:
        """Up to 64 list items, comma-separated: plain scalars in one encoder call."""
        plain = all(type(item) in (str, int, bool, type(None)) for item in items)
        if plain and not any(type(item) is str and len(item) > _SLICE for item in items):
            self.write(_COMPACT.encode(items)[1:-1])
            return
        if all(type(item) is float for item in items):
            self.write(",".join(map(js_number, items)))
            return
        for index, item in enumerate(items):
            if index:
                self.write(",")
            self.write_value(item)

    def write_long_string(self, text: str) -> None:
        """A long string in slices, each escaped on its own and encoded at once."""
        self.write('"')
        start = 0
        while start < len(text):
            end = start + _SLICE
            if "\ud800" <= text[end - 1:end] <= "\udbff":
                end += 1  # never split a surrogate pair between two slices
            self.write(_COMPACT.encode(text[start:end])[1:-1])
            self.flush()
            start = end
        self.write('"')


def _js_scalar(value: Any) -> str:
    if type(value) is float:
        return js_number(value)
    return _COMPACT.encode(value)


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of JSON text; lone surrogates become \\uXXXX escapes as Node writes them."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape_lone_surrogate, text).encode()


def _escape_lone_surrogate(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:  # a high and a low surrogate: one character, written as itself
        return (found.encode("utf-16-le", "surrogatepass")).decode("utf-16-le")
    return "\\u%04x" % ord(found)


def js_number(value: float) -> str:
    """ECMAScript's Number::toString for a float: the shortest round-trip digits (the same
    digits as Python's repr), positional for decimal exponents -7 < n <= 21, else d.ddde+N."""
    text = float.__repr__(value)
    if "e" not in text and "n" not in text:  # repr is positional for 1e-4 <= |x| < 1e16
        if text.endswith(".0"):
            text = text[:-2]
        return "0" if text == "-0" else text
    if not math.isfinite(value):
        return "null"
    mantissa, _, exponent_text = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).rstrip("0")
    point = len(whole) + int(exponent_text or 0)  # the decimal point's position in `digits`
    sign = "-" if value < 0 else ""
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    fraction_part = "." + digits[1:] if len(digits) > 1 else ""
    return "%s%s%se%+d" % (sign, digits[0], fraction_part, point - 1)


