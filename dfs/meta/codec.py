"""Deterministic bytes for commands and results: a tag, then each field in declaration
order (zigzag varints for integers, length-prefixed bytes and text, a presence byte for
optional fields, a count before sequences).

The field layout comes from the records' type hints, so a record and its encoding cannot
drift apart; a decoder refuses trailing bytes, unknown tags and truncated input with
CodecError. No I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any

from dfs.meta.ops import COMMAND_TYPES, QUERY_TYPES, Command, Query
from dfs.meta.results import RESULT_TYPES, Result

Encoder = Callable[[bytearray, Any], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]


class CodecError(ValueError):
    """Bytes that no encoder produced."""


def put_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def get_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    if pos < len(data) and data[pos] < 0x80:  # most numbers fit one byte
        return data[pos], pos + 1
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise CodecError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _put_int(out: bytearray, value: int) -> None:
    if 0 <= value < 0x40:  # one byte after zigzag
        out.append(value << 1)
        return
    put_uvarint(out, value << 1 if value >= 0 else (-value << 1) - 1)


def _get_int(data: bytes, pos: int) -> tuple[int, int]:
    raw, pos = get_uvarint(data, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def _put_bytes(out: bytearray, value: bytes) -> None:
    put_uvarint(out, len(value))
    out += value


def _get_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = get_uvarint(data, pos)
    end = pos + length
    if end > len(data):
        raise CodecError("truncated bytes")
    return bytes(data[pos:end]), end


def _put_str(out: bytearray, value: str) -> None:
    _put_bytes(out, value.encode())


def _get_str(data: bytes, pos: int) -> tuple[str, int]:
    raw, pos = _get_bytes(data, pos)
    try:
        return raw.decode(), pos
    except UnicodeDecodeError as error:
        raise CodecError("bad text") from error


def _put_bool(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def _get_bool(data: bytes, pos: int) -> tuple[bool, int]:
    if pos >= len(data) or data[pos] > 1:
        raise CodecError("bad bool")
    return data[pos] == 1, pos + 1


def _codec_for(hint: Any) -> tuple[Encoder, Decoder]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _optional(*_codec_for(inner))
    if origin is tuple:
        return _sequence(*_codec_for(typing.get_args(hint)[0]))
    if isinstance(hint, type) and issubclass(hint, enum.IntEnum):
        return _enum(hint)
    if hint is bool:
        return _put_bool, _get_bool
    if hint is int:
        return _put_int, _get_int
    if hint is bytes:
        return _put_bytes, _get_bytes
    if hint is str:
        return _put_str, _get_str
    if isinstance(hint, type) and (dataclasses.is_dataclass(hint) or _is_named_tuple(hint)):
        return _record(hint)
    raise TypeError(f"no codec for {hint!r}")


def _optional(encode: Encoder, decode: Decoder) -> tuple[Encoder, Decoder]:
    def put(out: bytearray, value: Any) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            encode(out, value)

    def get(data: bytes, pos: int) -> tuple[Any, int]:
        present, pos = _get_bool(data, pos)
        return decode(data, pos) if present else (None, pos)

    return put, get


def _sequence(encode: Encoder, decode: Decoder) -> tuple[Encoder, Decoder]:
    def put(out: bytearray, values: Any) -> None:
        put_uvarint(out, len(values))
        for value in values:
            encode(out, value)

    def get(data: bytes, pos: int) -> tuple[Any, int]:
        count, pos = get_uvarint(data, pos)
        if count > len(data) - pos:  # every item takes at least one byte
            raise CodecError("bad count")
        items = []
        for _ in range(count):
            item, pos = decode(data, pos)
            items.append(item)
        return tuple(items), pos

    return put, get


def _enum(kind: type[enum.IntEnum]) -> tuple[Encoder, Decoder]:
    members = {member.value: member for member in kind}  # a dict beats calling the enum

    def get(data: bytes, pos: int) -> tuple[Any, int]:
        raw, pos = _get_int(data, pos)
        member = members.get(raw)
        if member is None:
            raise CodecError(f"bad {kind.__name__}")
        return member, pos

    return _put_int, get


_RECORDS: dict[type, tuple[Encoder, Decoder]] = {}


def _is_named_tuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _field_names(cls: type) -> list[str]:
    if _is_named_tuple(cls):
        return list(cls._fields)  # type: ignore[attr-defined]
    return [field.name for field in dataclasses.fields(cls)]


def _record(cls: type) -> tuple[Encoder, Decoder]:
    if cls in _RECORDS:
        return _RECORDS[cls]
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    field_codecs = [_codec_for(hints[name]) for name in names]
    encoders = [(name, encode) for name, (encode, _) in zip(names, field_codecs, strict=True)]
    decoders = [decode for _, decode in field_codecs]

    def put(out: bytearray, value: Any) -> None:
        for name, encode in encoders:
            encode(out, getattr(value, name))

    def get(data: bytes, pos: int) -> tuple[Any, int]:
        values = []
        for decode in decoders:
            item, pos = decode(data, pos)
            values.append(item)
        return cls(*values), pos

    _RECORDS[cls] = (put, get)
    return put, get


class _TaggedCodec:
    """Encodes one family of records (commands, queries or results) behind a tag."""

    def __init__(self, family: tuple[type, ...]) -> None:
        self._tags = {cls: tag for tag, cls in enumerate(family, start=1)}
        self._codecs = {tag: _record(cls) for cls, tag in self._tags.items()}

    def encode(self, value: object) -> bytes:
        tag = self._tags.get(type(value))
        if tag is None:
            raise TypeError(f"not encodable here: {type(value).__name__}")
        out = bytearray()
        put_uvarint(out, tag)
        self._codecs[tag][0](out, value)
        return bytes(out)

    def decode(self, data: bytes) -> Any:
        tag, pos = get_uvarint(data, 0)
        codec = self._codecs.get(tag)
        if codec is None:
            raise CodecError(f"unknown tag {tag}")
        try:
            value, pos = codec[1](data, pos)
        except (TypeError, ValueError) as error:
            if isinstance(error, CodecError):
                raise
            raise CodecError(str(error)) from error
        if pos != len(data):
            raise CodecError("trailing bytes")
        return value


_COMMANDS = _TaggedCodec(COMMAND_TYPES)
_QUERIES = _TaggedCodec(QUERY_TYPES)
_RESULTS = _TaggedCodec(RESULT_TYPES)


def encode_command(command: Command) -> bytes:
    return _COMMANDS.encode(command)


def decode_command(data: bytes) -> Command:
    command: Command = _COMMANDS.decode(data)
    return command


def encode_query(query: Query) -> bytes:
    return _QUERIES.encode(query)


def decode_query(data: bytes) -> Query:
    query: Query = _QUERIES.decode(data)
    return query


def encode_result(result: Result) -> bytes:
    return _RESULTS.encode(result)


def decode_result(data: bytes) -> Result:
    result: Result = _RESULTS.decode(data)
    return result
