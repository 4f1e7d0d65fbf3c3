"""Node's JSON.stringify, rebuilt: the bytes soketi signed for a direct invocation.

json's compact encoder writes what Node writes but for floats (Node: 1e-7, 5, 0; Python:
1e-07, 5.0, -0.0) and lone surrogates (Node escapes them). The rebuild runs before the
signature is checked, so it is linear in the payload and recurses nowhere but in the encoder,
on parts at most MAX_NESTING deep: a small float-free payload is judged a level at a time and
encoded at once; anything else takes one walk with its own stack (`_rebuild`) that decides
bottom up which parts are simple (no float, at most _SMALL characters) and encodes runs of
them in one call. The UTF-8 codec escapes lone surrogates (backslashreplace, as Node does).
"""
from __future__ import annotations

import io
from itertools import chain, islice
from operator import itemgetter, length_hint

from .errors import Reject
from .js_text import encode, js_number, quote, utf8, value_text

TYPE_CHECKING = False
if TYPE_CHECKING:  # names for type checkers and editors only: no import at cold start
    from collections.abc import Iterator
    from typing import Any

    Frame = tuple[Any, Iterator[Any], Any, int]  # see _rebuild

MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit, bytes
MAX_NESTING = 500  # levels of containers in a directly invoked payload, the payload included
_FAST = 16384  # characters: a float-free payload this small is encoded in one call
_SMALL = 4096  # characters: a float-free part this small is encoded in one call by the walk
_SLICE = 65536  # characters of a long string escaped at once
_TOO_LARGE = "payload is larger than Lambda's 6 MB invocation limit"
_TOO_DEEP = "payload is nested deeper than %d levels" % MAX_NESTING


def node_json(value: Any) -> bytes:
    """The UTF-8 bytes of Node's JSON.stringify(value) for a value parsed from Node's JSON.
    Reject(400) past MAX_NESTING or MAX_INVOKE_PAYLOAD; TypeError for a non-JSON value."""
    output = _Output()
    if type(value) is not dict and type(value) is not list:
        output.parts.append(value_text(value))
        return output.getvalue()
    text = _small_text(value)
    if text is None:
        _rebuild(value, output)
    else:
        output.parts.append(text)
    return output.getvalue()


_PLAIN = frozenset({str, int, bool, type(None), list, dict})  # what the encoder writes as Node


def _small_text(root: Any) -> str | None:
    """`root`'s JSON text if a look a level at a time finds it float-free, at most _FAST
    characters and MAX_NESTING deep, else None (early: a large payload costs it little)."""
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
            return encode(root)
    return None  # deeper than MAX_NESTING: the walk says so


def _rebuild(root: Any, output: _Output) -> None:
    """Write `root` as Node would, reading each member once. `stack`: the open containers as
    (container, its members' iterator, its member in its parent, `seen` on entry); `seen`
    roughly counts the characters read. Once a container must be written (a float, a long
    string, past _SMALL), it and its ancestors write their openings (`_open`); `opened` holds
    an _Opened for each of them (the outermost ones)."""
    parts = output.parts
    members = iter(root.items()) if type(root) is dict else iter(root)
    stack: list[Frame] = [(root, members, None, 0)]
    opened: list[_Opened] = []
    seen = 0
    while stack:
        if len(parts) >= 256:
            output.settle()
        container, members, member_in_parent, entered = stack[-1]
        is_dict = type(container) is dict
        record = opened[-1] if len(opened) == len(stack) else None
        limit = (entered if record is None else record.since) + _SMALL
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
                if not record.run:  # nothing waits before it: written at once
                    head = record.comma + quote(member[0]) + ":" if is_dict else record.comma
                    parts.append(head + js_number(item))
                    record.comma = ","
                    if len(parts) >= 256:
                        output.settle()
                    continue
            else:
                raise TypeError("%s is not a JSON value" % kind.__name__)
            seen += cost
            if record is not None:
                record.run.append(member)
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
                parts.append(encode(container))  # the root, simple after all
            elif len(opened) == len(stack):
                opened[-1].run.append(member_in_parent)  # a simple child of a written parent


def _grown(stack: list[Frame], opened: list[_Opened], record: _Opened | None,
           output: _Output, seen: int) -> _Opened:
    """The top container passed _SMALL characters: opened if need be, its run written."""
    if record is None:
        record = _open(stack, opened, output, seen, False)
    _flush(record, type(stack[-1][0]) is dict, output)
    record.since = seen
    return record


def _open(stack: list[Frame], opened: list[_Opened], output: _Output, seen: int,
          exclude_last: bool) -> _Opened:
    """Write the openings of the unwritten containers, each after its parent's run; each
    run starts as its members read, less the child (or the top's last if `exclude_last`)."""
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
        opened.append(_Opened(run, seen))
    return opened[-1]


def _member_head(record: _Opened, member: Any, is_dict: bool, output: _Output) -> str:
    """Before a member written on its own: the run (written now), a comma, the key."""
    _flush(record, is_dict, output)
    head: str = record.comma
    record.comma = ","
    if is_dict:
        return head + quote(member[0]) + ":"
    return head


def _flush(record: _Opened, is_dict: bool, output: _Output) -> None:
    """Write a run: many float-free members in one encoder call, else member by member."""
    run = record.run
    if not run:
        return
    values = map(itemgetter(1), run) if is_dict else run
    if len(run) > 8 and float not in set(map(type, values)):
        text = encode(dict(run) if is_dict else run)[1:-1]
    elif is_dict:
        text = ",".join([quote(key) + ":" + value_text(value) for key, value in run])
    else:
        text = ",".join(map(value_text, run))
    output.parts.append(record.comma + text)
    record.comma = ","
    run.clear()
    if len(text) > 1024:
        output.settle()


def _write_long_string(text: str, output: _Output) -> None:
    """A string longer than _SLICE, a slice at a time; refused before any is written if it
    cannot fit."""
    if output.buffer.tell() + len(text) > MAX_INVOKE_PAYLOAD:
        raise Reject(400, _TOO_LARGE)
    output.parts.append('"')
    start = 0
    while start < len(text):
        end = start + _SLICE
        if "\ud800" <= text[end - 1:end] <= "\udbff":
            end += 1  # never split a surrogate pair between two slices
        output.parts.append(quote(text[start:end])[1:-1])
        output.settle()
        start = end
    output.parts.append('"')


class _Opened:
    """A container whose opening is written: `run`, its members read and not yet written;
    `comma`, what goes before its next member ("", then ","); `since`, the characters read
    when the run began."""

    __slots__ = ("run", "comma", "since")

    def __init__(self, run: list[Any], since: int) -> None:
        self.run = run
        self.comma = ""
        self.since = since


class _Output:
    """Text parts turned into UTF-8 by `settle` (every 256 parts, or after a long one) in a
    BytesIO, whose getvalue hands its buffer over uncopied: memory holds the output once."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.buffer = io.BytesIO()

    def settle(self) -> None:
        data = utf8("".join(self.parts))
        self.parts.clear()
        if self.buffer.tell() + len(data) > MAX_INVOKE_PAYLOAD:
            raise Reject(400, _TOO_LARGE)
        self.buffer.write(data)

    def getvalue(self) -> bytes:
        self.settle()
        return self.buffer.getvalue()


