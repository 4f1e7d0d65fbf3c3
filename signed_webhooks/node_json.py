"""Node's JSON.stringify, rebuilt: the bytes soketi signed for a direct invocation.

soketi signs JSON.stringify(payload) in Node, and a Lambda trigger hands us the parsed
payload, not those bytes. json's compact encoder matches Node except for floats (Node writes
1e-7, 5, 0 where Python writes 1e-07, 5.0, -0.0) and lone surrogates (Node escapes them).

The rebuild runs before the signature can be checked, so whatever a forger sends is paid
for. Every step is linear in the payload, and nothing recurses but the encoder, on parts
known to be at most MAX_NESTING deep:
- A small float-free payload is judged a level at a time and encoded in one call.
- Anything else takes one depth-first walk (`_rebuild`) with a stack of its own. It reads
  each member once and decides bottom up which containers are simple (no float, at most
  _SMALL characters): runs of simple members go to the encoder in one call, and a container
  is written piece by piece only once it holds a float or grows past _SMALL.
- Lone surrogates are escaped by the UTF-8 codec itself (backslashreplace writes \\udXXX as
  Node does), and text becomes bytes every few hundred parts: memory holds the output once.
Past MAX_NESTING levels or Lambda's 6 MB the rebuild stops with Reject(400).
"""
from __future__ import annotations

import io
import json
import json.encoder
import re
from itertools import chain, islice
from operator import itemgetter, length_hint

from .errors import Reject

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Callable, Iterator
    from typing import Any

    Container = Any  # a list, or a dict with str keys
    Frame = tuple[Container, Iterator[Any], Any, int]

MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit, bytes
MAX_NESTING = 500  # levels of containers in a directly invoked payload, the payload included
_FAST = 16384  # characters: a float-free payload this small is encoded in one call
_SMALL = 4096  # characters: a float-free part this small is encoded in one call by the walk
_SLICE = 65536  # characters of a long string escaped at once
_TOO_LARGE = "payload is larger than Lambda's 6 MB invocation limit"
_TOO_DEEP = "payload is nested deeper than %d levels" % MAX_NESTING


def node_json(value: Any) -> bytes:
    """The UTF-8 bytes of Node's JSON.stringify(value), exactly, for a value parsed from JSON
    that Node wrote (so its keys are already in JavaScript's order). Reject(400) past
    MAX_NESTING levels or MAX_INVOKE_PAYLOAD bytes; TypeError for a value JSON cannot hold."""
    output = _Output()
    if type(value) is not dict and type(value) is not list:
        output.parts.append(_text(value))
        return output.getvalue()
    text = _small_text(value)
    if text is None:
        _rebuild(value, output)
    else:
        output.parts.append(text)
    return output.getvalue()


_PLAIN = frozenset({str, int, bool, type(None), list, dict})  # what the encoder writes as Node


def _small_text(root: Container) -> str | None:
    """The JSON text of `root` when a breadth-first look finds it float-free, at most _FAST
    characters (roughly) and at most MAX_NESTING levels deep; else None. The look reads each
    member once and stops as soon as the count passes _FAST: a large payload costs it little."""
    lists = [root] if type(root) is list else []
    dicts = [root] if type(root) is dict else []
    budget = _FAST
    for _ in range(MAX_NESTING):
        budget -= 2 * (sum(map(len, lists)) + sum(map(len, dicts)) + 1)
        budget -= sum(map(len, chain.from_iterable(dicts)))  # the keys
        if budget < 0:
            return None
        members = chain(chain.from_iterable(lists), chain.from_iterable(map(dict.values, dicts)))
        lists = []
        dicts = []
        for member in members:
            kind = type(member)
            if kind is str:
                budget -= len(member)
                if budget < 0:
                    return None
            elif kind is dict:
                dicts.append(member)
            elif kind is list:
                lists.append(member)
            elif kind not in _PLAIN:
                return None  # a float, or something the walk will refuse
        if not lists and not dicts:
            return _encode(root)
    return None  # deeper than MAX_NESTING: the walk says so


def _rebuild(root: Container, output: _Output) -> None:
    """Write `root` as Node would, reading each member once, with no recursion.

    `stack` holds the open containers, outermost first, as (container, its members' iterator,
    its member in its parent, `seen` when it was entered); `seen` roughly counts the
    characters read so far. A container not yet written may still go to the encoder whole,
    with its parent. Once one must be written (a float, a long string, or past _SMALL), it and
    its ancestors write their opening brackets (`_open`). `opened` holds, for each written
    container (always the outermost ones), [its run: members read but not written; "," once
    something is written in it; `seen` when its run began]."""
    parts = output.parts
    members = iter(root.items()) if type(root) is dict else iter(root)
    stack: list[Frame] = [(root, members, None, 0)]
    opened: list[list[Any]] = []
    seen = 0
    while stack:
        if len(parts) >= 256:
            output.settle()
        container, members, member_in_parent, entered = stack[-1]
        is_dict = type(container) is dict
        record = opened[-1] if len(opened) == len(stack) else None
        limit = (entered if record is None else record[2]) + _SMALL
        if seen > limit:  # the child just read made this container too large to be simple
            record = _grown(stack, opened, record, output, seen)
            limit = seen + _SMALL
        for member in members:
            if is_dict:
                item = member[1]
                cost = len(member[0]) + 4
            else:
                item = member
                cost = 1
            kind = type(item)
            if kind is str:
                if len(item) > _SLICE:
                    if record is None:
                        record = _open(stack, opened, output, seen, True)
                    parts.append(_member_head(record, member, is_dict, output))
                    _write_long_string(item, output)
                    continue
                cost += len(item) + 2
            elif kind is int or kind is bool or item is None:
                cost += 1
            elif kind is dict or kind is list:
                if item:
                    if len(stack) >= MAX_NESTING:
                        raise Reject(400, _TOO_DEEP)
                    seen += cost
                    members = iter(item.items()) if kind is dict else iter(item)
                    stack.append((item, members, member, seen))
                    break
                cost += 2
            elif kind is float:
                cost += 8
                if record is None:
                    record = _open(stack, opened, output, seen, True)
                if not record[0]:  # nothing waits before it: written at once
                    head = record[1] + _quote(member[0]) + ":" if is_dict else record[1]
                    parts.append(head + js_number(item))
                    record[1] = ","
                    if len(parts) >= 256:
                        output.settle()
                    continue
            else:
                raise TypeError("%s is not a JSON value" % kind.__name__)
            seen += cost
            if record is not None:
                record[0].append(member)
            if seen > limit:
                record = _grown(stack, opened, record, output, seen)
                limit = seen + _SMALL
        else:
            stack.pop()
            seen += 2
            if record is not None:
                opened.pop()
                _flush(record, is_dict, output)
                parts.append("}" if is_dict else "]")
            elif not stack:
                parts.append(_encode(container))  # the root, simple after all
            elif len(opened) == len(stack):
                opened[-1][0].append(member_in_parent)  # a simple child of a written parent


def _grown(stack: list[Frame], opened: list[list[Any]], record: list[Any] | None,
           output: _Output, seen: int) -> list[Any]:
    """The top container passed _SMALL characters since it was entered or last written to:
    it is not simple (opened if need be), and its run is written now."""
    if record is None:
        record = _open(stack, opened, output, seen, False)
    _flush(record, type(stack[-1][0]) is dict, output)
    record[2] = seen
    return record


def _open(stack: list[Frame], opened: list[list[Any]], output: _Output, seen: int,
          exclude_last: bool) -> list[Any]:
    """Write the opening bracket of the top container and of every ancestor not yet
    written, each after its parent's run. Each one's run starts as the members it has read,
    less the child being read (or, for the top, its last member if `exclude_last`)."""
    top = len(stack) - 1
    for depth in range(len(opened), top + 1):
        container, members, member_in_parent, _ = stack[depth]
        is_dict = type(container) is dict
        read = len(container) - length_hint(members)  # members the iterator has yielded
        if depth < top or exclude_last:
            read -= 1
        head = "{" if is_dict else "["
        if depth:
            parent_is_dict = type(stack[depth - 1][0]) is dict
            head = _member_head(opened[-1], member_in_parent, parent_is_dict, output) + head
        output.parts.append(head)
        if not read:
            run = []
        elif is_dict:
            run = list(islice(container.items(), read))
        else:
            run = container[:read]
        opened.append([run, "", seen])
    return opened[-1]


def _member_head(record: list[Any], member: Any, is_dict: bool, output: _Output) -> str:
    """What goes before a member written on its own in an open container: its run (written
    now), a comma unless the member is the first, and its key in an object."""
    _flush(record, is_dict, output)
    head: str = record[1]
    record[1] = ","
    if is_dict:
        return head + _quote(member[0]) + ":"
    return head


def _flush(record: list[Any], is_dict: bool, output: _Output) -> None:
    """Write the run of an open container, if any: many float-free members in one encoder
    call, a few members or any float member by member."""
    run = record[0]
    if not run:
        return
    values = map(itemgetter(1), run) if is_dict else run
    if len(run) > 8 and float not in set(map(type, values)):
        text = _encode(dict(run) if is_dict else run)[1:-1]
    elif is_dict:
        text = ",".join([_quote(key) + ":" + _text(value) for key, value in run])
    else:
        text = ",".join(map(_text, run))
    output.parts.append(record[1] + text)
    record[1] = ","
    run.clear()
    if len(text) > 1024:
        output.settle()


def _write_long_string(text: str, output: _Output) -> None:
    """A string longer than _SLICE, escaped and turned into bytes a slice at a time (never
    splitting a surrogate pair); refused before any of it is written if it cannot fit."""
    if output.buffer.tell() + len(text) > MAX_INVOKE_PAYLOAD:
        raise Reject(400, _TOO_LARGE)
    output.parts.append('"')
    start = 0
    while start < len(text):
        end = start + _SLICE
        if "\ud800" <= text[end - 1:end] <= "\udbff":
            end += 1  # never split a surrogate pair between two slices
        output.parts.append(_quote(text[start:end])[1:-1])
        output.settle()
        start = end
    output.parts.append('"')


class _Output:
    """The rebuilt bytes: text collected in parts, turned into UTF-8 by `settle` (every 256
    parts, or after a long one) into a BytesIO whose buffer getvalue hands over without a
    copy, so memory holds the output about once, plus a bounded remainder."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.buffer = io.BytesIO()

    def settle(self) -> None:
        data = _utf8("".join(self.parts))
        self.parts.clear()
        if self.buffer.tell() + len(data) > MAX_INVOKE_PAYLOAD:
            raise Reject(400, _TOO_LARGE)
        self.buffer.write(data)

    def getvalue(self) -> bytes:
        self.settle()
        return self.buffer.getvalue()


_quote: Callable[[str], str] = json.encoder.encode_basestring  # non-ASCII kept, as Node
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
# json.dumps's own C encoder, made once: JSONEncoder.encode makes one on every call, which
# costs more than encoding a short run. No circularity check: the walk bounded what it is
# given. None on a Python without the _json accelerator.
_make_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = _make_encoder and _make_encoder(None, None, _quote, None, ":", ",", False, False,
                                             True)


def _encode(value: Any) -> str:
    """The compact JSON text of a float-free value, as json.dumps writes it."""
    if _c_encoder is None:
        return _COMPACT.encode(value)
    return "".join(_c_encoder(value, 0))


def js_number(value: float) -> str:
    """ECMAScript's Number::toString for a float: the shortest round-trip digits (the same
    digits as Python's repr), positional for decimal exponents -7 < n < 21, else d.ddde+N.
    repr is positional for 1e-4 <= |value| < 1e16 (Node's text but for a trailing ".0"),
    elsewhere in exponent form with at least two exponent digits."""
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
    """d.ddd times 10**power written out: 1e-05 -> 0.00001, 1.5e+17 -> 150000000000000000."""
    sign = "-" if mantissa.startswith("-") else ""
    whole, _, fraction = mantissa.lstrip("-").partition(".")  # whole is one digit
    if power < 0:
        return sign + "0." + "0" * (-power - 1) + whole + fraction
    return sign + whole + fraction + "0" * (power - len(fraction))


_TEXT: dict[type, Callable[[Any], str]] = {
    str: _quote, int: int.__repr__, float: js_number, type(None): lambda _: "null",
    bool: {True: "true", False: "false"}.__getitem__, list: _encode, dict: _encode}


def _text(value: Any) -> str:
    """One value as Node writes it: a scalar, or a simple (float-free) container."""
    write = _TEXT.get(type(value))
    if write is None:
        raise TypeError("%s is not a JSON value" % type(value).__name__)
    return write(value)


_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of JSON text; lone surrogates become \\uXXXX escapes as Node writes them,
    by the codec's own backslashreplace. A high and a low surrogate side by side (only a str
    built in Python holds them apart) are one character to JavaScript: joined first."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        if _PAIR.search(text):
            text = _PAIR.sub(_joined_pair, text)
        return text.encode("utf-8", "backslashreplace")


def _joined_pair(match: re.Match[str]) -> str:
    return match.group().encode("utf-16-le", "surrogatepass").decode("utf-16-le")
