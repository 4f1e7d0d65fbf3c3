"""How Node's JSON.stringify writes one value: numbers as JavaScript does, lone surrogates
escaped, everything else as json's compact C encoder writes it.

Imported with node_json.py (soketi's direct invocations only), which walks a payload and
writes its parts with these.
"""
from __future__ import annotations

import json
import json.encoder
import re

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable
    from typing import Any

quote: Callable[[str], str] = json.encoder.encode_basestring  # non-ASCII kept, as Node
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
# json.dumps's C encoder, made once (JSONEncoder.encode makes one per call), with no
# circularity check: the walk bounded what it gets. None without the _json accelerator.
_make_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = _make_encoder and _make_encoder(None, None, quote, None, ":", ",", False, False,
                                            True)


def encode(value: Any) -> str:
    """The compact JSON text of a float-free value, as json.dumps writes it."""
    if _c_encoder is None:
        return _COMPACT.encode(value)
    return "".join(_c_encoder(value, 0))


def js_number(value: float) -> str:
    """ECMAScript's Number::toString for a float: repr's shortest round-trip digits,
    positional for decimal exponents -7 < n < 21, else d.ddde+N (repr: two exponent digits)."""
    text = float.__repr__(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        power = int(exponent)
        if -7 < power < 21:
            return _positional(mantissa, power)
        return mantissa + ("e+" if power > 0 else "e") + str(power)  # 1e-07 -> 1e-7
    if text.endswith(".0"):
        return "0" if text == "-0.0" else text[:-2]
    if text in ("inf", "-inf", "nan"):
        return "null"
    return text


def _positional(mantissa: str, power: int) -> str:
    sign = "-" if mantissa.startswith("-") else ""
    whole, _, fraction = mantissa.lstrip("-").partition(".")  # whole is one digit
    if power < 0:
        return sign + "0." + "0" * (-power - 1) + whole + fraction
    return sign + whole + fraction + "0" * (power - len(fraction))


_TEXT: dict[type, Callable[[Any], str]] = {
    str: quote, int: int.__repr__, float: js_number, type(None): lambda _: "null",
    bool: {True: "true", False: "false"}.__getitem__, list: encode, dict: encode}


def value_text(value: Any) -> str:
    """The JSON text Node writes for `value`; TypeError for a non-JSON value."""
    write = _TEXT.get(type(value))
    if write is None:
        raise TypeError("%s is not a JSON value" % type(value).__name__)
    return write(value)


_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def utf8(text: str) -> bytes:
    """UTF-8 of JSON text, lone surrogates as \\uXXXX (the codec's backslashreplace); a high
    and a low surrogate side by side (only a str built in Python) are joined first."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        if _PAIR.search(text):
            text = _PAIR.sub(_joined_pair, text)
        return text.encode("utf-8", "backslashreplace")


def _joined_pair(match: re.Match[str]) -> str:  # the two halves as one character
    return match.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le")
