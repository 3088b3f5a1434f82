"""A tolerant reader for protobuf text format, the syntax of every prototxt.

Caffe parses prototxt with protobuf's strict TextFormat, so a fork's extra field (`ceil_mode`,
`permute_param`) makes BVLC Caffe -- and every converter built on its caffe.proto -- reject the
whole file. This reader fills the same caffe_pb2 messages but hands each unknown field to the
caller instead of failing: fork fields with a known meaning are mapped (FORK_FIELDS), the rest
are reported with file:line:column and kept as plain values so that fork layers can use them.
Syntax errors still stop reading, with file:line:column.
"""
from __future__ import annotations

import bisect
import codecs
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from . import caffe_pb2
from .wire import INT_RANGES, is_repeated
from ..errors import NetError

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n\f\v,;]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]++|\\.)*+"|'(?:[^'\\\n]++|\\.)*+')
  | (?P<word>[A-Za-z0-9_.+\-]+)
  | (?P<punct>[{}<>\[\]:])
""", re.VERBOSE)

_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_TRUE = {"true", "True", "t", "1"}
_FALSE = {"false", "False", "f", "0"}


# How deep messages may nest. Caffe's own nets need 4; protobuf's TextFormat parser stops at 100.
MAX_DEPTH = 100


@dataclass(slots=True)
class Token:
    kind: str   # "string", "word", "punct" or "end"
    text: str
    pos: int    # offset in the text
    body: str | None = None  # adjacent strings joined: the concatenated, still escaped body


@dataclass(slots=True)
class Entry:
    """One `name: value` or `name { ... }` of the text; `value` is a Token or a list of
    Entries (a sub-message) or, for `name: [a, b]`, a list of those."""

    name: str
    value: Any
    pos: int
    is_list: bool = False


@dataclass
class Unknown:
    """A field the schema does not have. `path` is dotted from the top message
    (`layer.pooling_param.ceil_mode`); `layer` is the index of the enclosing layer entry in its
    container (`layer` or `layers`), or None."""

    path: str
    message: str          # full name of the message type that lacks the field
    value: Any            # plain Python value: scalar, dict of lists, or list of those
    line: int
    column: int
    container: str | None = None
    layer: int | None = None
    mapped_to: str | None = None   # set when a fork rule understood the field


@dataclass
class ParseResult:
    message: Message
    unknown: list[Unknown] = field(default_factory=list)


# -- fork fields with a known meaning -------------------------------------------------------------

ForkRule = Callable[[Message, Any], "str | None"]
FORK_FIELDS: dict[tuple[str, str], ForkRule] = {}


def fork_field(message: str, name: str) -> Callable[[ForkRule], ForkRule]:
    """Register how to read fork field `name` of message type `message` (full name, e.g.
    "caffe.PoolingParameter"). The rule gets the message and the plain value, sets what it
    understands and returns a short description of the mapping (or None if it could not)."""
    def register(fn: ForkRule) -> ForkRule:
        FORK_FIELDS[(message, name)] = fn
        return fn
    return register


@fork_field("caffe.PoolingParameter", "ceil_mode")
def _ceil_mode(msg, value):
    # Forks (shicai, soeaver, OpenCV's proto) spelled BVLC's later round_mode as a bool.
    if not isinstance(value, bool):
        return None
    if not msg.HasField("round_mode"):
        msg.round_mode = msg.CEIL if value else msg.FLOOR
    return "round_mode (true: CEIL, false: FLOOR)"


# -- tokenizer ------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self._lines: list[int] | None = None
        self.unknown: list[Unknown] = []
        self.depth = 0
        # Tokens are made as the parser asks for them (one token of lookahead), so memory holds the
        # parsed entries, never a second copy of the whole text as tokens.
        self._stream = self._tokenize()
        self._last = self._tok = next(self._stream)

    def _tokenize(self) -> Iterator[Token]:
        text = self.text
        pos, end = 0, len(text)
        match = _TOKEN.match
        while pos < end:
            m = match(text, pos)
            if m is None:
                self.fail(pos, f"unexpected character {text[pos]!r}")
            kind = m.lastgroup
            if kind != "space":
                yield Token(kind, m.group(), pos)
            pos = m.end()
        while True:
            yield Token("end", "", end)

    def where(self, pos: int) -> tuple[int, int]:
        if self._lines is None:
            self._lines = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._lines, pos)
        return line, pos - self._lines[line - 1] + 1

    def fail(self, pos: int, what: str):
        line, col = self.where(pos)
        raise NetError(f"{self.source}:{line}:{col}: {what}")

    def peek(self) -> Token:
        return self._tok

    def next(self) -> Token:
        self._last, self._tok = self._tok, next(self._stream)
        return self._last

    def expect(self, text: str) -> Token:
        tok = self.next()
        if tok.text != text or tok.kind not in ("punct",):
            self.fail(tok.pos, f"expected '{text}', found {_describe(tok)}")
        return tok

    # -- grammar: message := entry* ; entry := name [':'] (block | '[' values ']' | value)

    def entries(self, closer: str | None) -> list[Entry]:
        if closer:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self.fail(self._last.pos,
                          f"messages nested more than {MAX_DEPTH} deep")
        out = []
        while True:
            tok = self.peek()
            if tok.kind == "end":
                if closer:
                    self.fail(tok.pos, f"missing '{closer}' before the end of the file")
                return out
            if tok.kind == "punct" and tok.text == closer:
                self.next()
                self.depth -= 1
                return out
            if tok.kind != "word" or not (tok.text[0].isalpha() or tok.text[0] == "_"):
                self.fail(tok.pos, f"expected a field name, found {_describe(tok)}")
            self.next()
            out.append(self.entry(tok))

    def entry(self, name: Token) -> Entry:
        colon = self.peek().text == ":" and self.peek().kind == "punct"
        if colon:
            self.next()
        tok = self.peek()
        if tok.kind == "punct" and tok.text in "{<":
            self.next()
            return Entry(name.text, self.entries("}" if tok.text == "{" else ">"), name.pos)
        if not colon:
            self.fail(tok.pos, f"expected ':' or '{{' after '{name.text}', found {_describe(tok)}")
        if tok.kind == "punct" and tok.text == "[":
            self.next()
            items = []
            while not (self.peek().kind == "punct" and self.peek().text == "]"):
                item = self.peek()
                if item.kind == "punct" and item.text in "{<":
                    self.next()
                    items.append(self.entries("}" if item.text == "{" else ">"))
                else:
                    items.append(self.value())
            self.next()
            return Entry(name.text, items, name.pos, is_list=True)
        return Entry(name.text, self.value(), name.pos)

    def value(self) -> Token:
        tok = self.next()
        if tok.kind == "string":
            # Adjacent string literals concatenate, as in C.
            parts = [tok]
            while self.peek().kind == "string":
                parts.append(self.next())
            if len(parts) > 1:
                return Token("string", tok.text, tok.pos, "".join(_raw(p) for p in parts))
            return tok
        if tok.kind != "word":
            self.fail(tok.pos, f"expected a value, found {_describe(tok)}")
        return tok

    # -- filling messages -----------------------------------------------------------------------

    def fill(self, msg: Message, entries: list[Entry], path: str,
             layer: tuple[str, int] | None) -> None:
        desc = msg.DESCRIPTOR
        seen: set[str] = set()
        counters: dict[str, int] = {}
        for e in entries:
            fd = desc.fields_by_name.get(e.name)
            if fd is None:
                self.unknown_field(msg, e, path, layer)
                continue
            repeated = is_repeated(fd)
            if not repeated:
                if e.name in seen or e.is_list:
                    self.fail(e.pos, f"{desc.name}.{e.name} is not repeated but is given "
                                     "more than once")
                seen.add(e.name)
            values = e.value if e.is_list else [e.value]
            for v in values:
                if fd.message_type is not None:
                    if not isinstance(v, list):
                        self.fail(v.pos, f"{desc.name}.{e.name} is a message: expected "
                                         f"'{{', found {_describe(v)}")
                    if repeated:
                        sub = getattr(msg, e.name).add()
                    else:
                        sub = getattr(msg, e.name)
                        sub.SetInParent()
                    sub_layer = layer
                    if path == "" and e.name in ("layer", "layers"):
                        index = counters.get(e.name, 0)
                        counters[e.name] = index + 1
                        sub_layer = (e.name, index)
                    self.fill(sub, v, f"{path}{e.name}.", sub_layer)
                else:
                    if isinstance(v, list):
                        self.fail(e.pos, f"{desc.name}.{e.name} is a "
                                         f"{_type_name(fd)}, not a message")
                    scalar = self.scalar(fd, v, desc.name)
                    if repeated:
                        getattr(msg, e.name).append(scalar)
                    else:
                        setattr(msg, e.name, scalar)

    def scalar(self, fd: FieldDescriptor, tok: Token, owner: str) -> Any:
        cpp = fd.cpp_type
        text = tok.text
        what = f"{owner}.{fd.name}"
        if cpp == FieldDescriptor.CPPTYPE_STRING:
            if tok.kind != "string":
                self.fail(tok.pos, f"{what} expects a quoted string, found {text}")
            try:
                raw = _unescape(_raw(tok))
            except _BadEscape as exc:
                self.fail(tok.pos, f"{what}: {exc}")
            if fd.type == FieldDescriptor.TYPE_BYTES:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(tok.pos, f"{what}: the string is not valid UTF-8")
        if tok.kind == "string":
            self.fail(tok.pos, f"{what} expects a {_type_name(fd)}, found a string {text}")
        if cpp == FieldDescriptor.CPPTYPE_BOOL:
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            self.fail(tok.pos, f"{what} expects true or false, found {text}")
        if cpp == FieldDescriptor.CPPTYPE_ENUM:
            value = fd.enum_type.values_by_name.get(text)
            if value is not None:
                return value.number
            number = _int(text)
            if number is not None and number in fd.enum_type.values_by_number:
                return number
            names = ", ".join(v.name for v in fd.enum_type.values)
            self.fail(tok.pos, f"{what}: '{text}' is not one of {names}")
        if cpp in INT_RANGES:
            number = _int(text)
            if number is None:
                self.fail(tok.pos, f"{what} expects an integer, found {text}")
            low, high = INT_RANGES[cpp]
            if not low <= number <= high:
                self.fail(tok.pos, f"{what}: {text} is out of range for a {_type_name(fd)}")
            return number
        if cpp in _FLOATS:
            number = _float(text)
            if number is None:
                self.fail(tok.pos, f"{what} expects a number, found {text}")
            return number
        self.fail(tok.pos, f"{what}: unsupported field type")  # pragma: no cover

    def unknown_field(self, msg: Message, e: Entry, path: str,
                      layer: tuple[str, int] | None) -> None:
        line, col = self.where(e.pos)
        try:
            value = _plain(e.value, e.is_list)
        except _BadEscape as exc:
            self.fail(e.pos, f"{path}{e.name}: {exc}")
        item = Unknown(f"{path}{e.name}", msg.DESCRIPTOR.full_name, value, line, col,
                       layer[0] if layer else None, layer[1] if layer else None)
        rule = FORK_FIELDS.get((msg.DESCRIPTOR.full_name, e.name))
        if rule is not None:
            for v in (value if e.is_list else [value]):
                item.mapped_to = rule(msg, v)
        self.unknown.append(item)


def parse_text(text: str, message: Message, source: str = "<string>") -> ParseResult:
    """Fill `message` from protobuf text; unknown fields are returned, not fatal."""
    reader = _Reader(text, source)
    entries = reader.entries(None)
    reader.fill(message, entries, "", None)
    return ParseResult(message, reader.unknown)


def parse_net_text(text: str, source: str = "<string>") -> ParseResult:
    return parse_text(text, caffe_pb2.NetParameter(), source)


# -- helpers --------------------------------------------------------------------------------------

def _describe(tok: Token) -> str:
    return "the end of the file" if tok.kind == "end" else f"'{tok.text}'"


def _raw(tok: Token) -> str:
    return tok.body if tok.body is not None else tok.text[1:-1]


class _BadEscape(ValueError):
    pass


def _unescape(body: str) -> bytes:
    # C escapes (\n, \", \123, \x41) as TextFormat writes them; non-ASCII text stays UTF-8.
    # An unknown escape (\q) stays as written, as protobuf's tokenizer keeps it.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codecs.escape_decode(body.encode("utf-8", "surrogateescape"))[0]
    except ValueError as exc:
        raise _BadEscape(f"bad escape in a string: {exc}") from None


def _int(text: str) -> int | None:
    try:
        if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if re.fullmatch(r"[-+]?0[0-7]+", text):
            return int(text, 8)
        if re.fullmatch(r"[-+]?[0-9]+", text):
            return int(text)
    except ValueError:  # pragma: no cover
        return None
    return None


def _float(text: str) -> float | None:
    lowered = text.lower()
    if lowered in ("inf", "+inf", "infinity", "+infinity", "inff"):
        return math.inf
    if lowered in ("-inf", "-infinity", "-inff"):
        return -math.inf
    if lowered in ("nan", "nanf"):
        return math.nan
    if lowered.endswith("f") and not lowered.startswith(("0x", "-0x")):
        lowered = lowered[:-1]
    try:
        return float(lowered)
    except ValueError:
        number = _int(text)
        return float(number) if number is not None else None


def _plain(value: Any, is_list: bool = False) -> Any:
    """An unknown field's value as plain Python: numbers, bools, strings, identifiers (as
    str), sub-messages as dicts of lists."""
    if is_list:
        return [_plain(v) for v in value]
    if isinstance(value, list):
        out: dict[str, list] = {}
        for e in value:
            v = _plain(e.value, e.is_list)
            out.setdefault(e.name, []).extend(v if e.is_list else [v])
        return out
    tok: Token = value
    if tok.kind == "string":
        return _unescape(_raw(tok)).decode("utf-8", "replace")
    if tok.text in ("true", "True"):
        return True
    if tok.text in ("false", "False"):
        return False
    number = _int(tok.text)
    if number is not None:
        return number
    number = _float(tok.text)
    if number is not None and re.match(r"[-+.0-9]", tok.text):
        return number
    return tok.text


def _type_name(fd: FieldDescriptor) -> str:
    names = {FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_INT32: "int32",
             FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
             FieldDescriptor.TYPE_FLOAT: "float", FieldDescriptor.TYPE_DOUBLE: "double",
             FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_ENUM: "enum",
             FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_MESSAGE: "message"}
    return names.get(fd.type, "value")
