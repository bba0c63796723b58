"""How documents and indexed values are stored in a collection file.

- A document is stored as its BSON (pymongo's `bson`, so it round-trips exactly as MongoDB would keep it:
  datetimes to the millisecond, UTC) compressed with raw DEFLATE against a preset dictionary (`zlib`
  `zdict`), so each document stays independently readable. Two kinds of dictionary (table `dicts`):
  a *base* (16 KB of sample documents of the collection) and, for every large write batch (an option
  chain), a *composite*: a base plus a tail of that batch's first documents (its snapshot id, instrument
  names and current values) — measured on real chains: 580-byte option documents shrink to about 115 bytes
  with a composite, 160 with the first chain's base alone. A batch picks the base that compresses a sample
  of it best and builds a new base only when none is within 15 % of a fresh one (BTC and ETH chains, or a
  new set of expiries, each find their own).
  Body layout: a LEB128 varint dictionary id (0 = plain BSON), then the payload.
- An indexed field is also stored in its own column so SQLite's B-tree indexes serve queries: strings and
  numbers as themselves, booleans as 0/1, datetimes as integer milliseconds since the epoch (UTC), None or
  a missing field as NULL. Indexed fields hold scalars (a list or sub-document there is an error).
- `_id` is stored in the `id` column: a string or an integer as itself, an ObjectId as a 12-byte BLOB.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

import bson
from bson.codec_options import CodecOptions
from bson.objectid import ObjectId

CODEC_OPTIONS = CodecOptions(tz_aware=True, tzinfo=timezone.utc)
DICT_MAX_BYTES = 16 * 1024          # a base dictionary (zlib's window is 32 KB; more gained nothing here)
DICT_SAMPLE_DOCS = 24
TAIL_DOCS = 2                        # documents of a batch appended to its base in a composite
LEVEL = 6
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class EncodeError(ValueError):
    """A value the embedded engine cannot store or index (the message names the field)."""


def build_dictionary(encoded: list[bytes]) -> bytes:
    """A preset dictionary from some encoded documents: evenly spread samples, most recent last (zlib
    weights the end of the dictionary most)."""
    if not encoded:
        return b""
    step = max(1, len(encoded) // DICT_SAMPLE_DOCS)
    sample = encoded[::step][:DICT_SAMPLE_DOCS]
    out = b"".join(sample)
    return out[-DICT_MAX_BYTES:]


def composite(base: bytes, tail: bytes) -> bytes:
    """The dictionary of a composite: the end of `base` then `tail`, within DICT_MAX_BYTES."""
    keep = max(DICT_MAX_BYTES - len(tail), 0)
    return (base[-keep:] if keep else b"") + tail[-DICT_MAX_BYTES:]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def header_id(body: bytes) -> tuple[int, int]:
    """(dictionary id, payload offset) of a stored body."""
    value = shift = pos = 0
    while True:
        byte = body[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def compressed_size(raw: bytes, dictionary: bytes) -> int:
    comp = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    return len(comp.compress(raw) + comp.flush())


def pack(raw: bytes, dict_id: int, dictionary: bytes | None) -> bytes:
    if dict_id and dictionary:
        comp = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        packed = comp.compress(raw) + comp.flush()
        head = _varint(dict_id)
        if len(packed) + len(head) < len(raw) + 1:
            return head + packed
    return b"\x00" + raw


def unpack(body: bytes, dictionaries) -> bytes:
    """The BSON bytes of a stored body; `dictionaries[id]` gives a dictionary (KeyError when unknown)."""
    dict_id, pos = header_id(body)
    if dict_id == 0:
        return body[pos:]
    decomp = zlib.decompressobj(-15, dictionaries[dict_id])
    return decomp.decompress(body[pos:]) + decomp.flush()


def decode_body(body: bytes, dictionaries) -> dict:
    return bson.decode(unpack(body, dictionaries), codec_options=CODEC_OPTIONS)


def column_value(value, field: str = ""):
    """The SQLite value of an indexed field (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, ObjectId):
        return value.binary
    if hasattr(value, "item"):  # numpy scalar
        return column_value(value.item(), field)
    raise EncodeError(f"indexed field {field!r} holds a {type(value).__name__}; the embedded store indexes "
                      "strings, numbers, booleans and datetimes only")


def id_value(value):
    """The `id` column value of a document `_id` (str, int, integral float or ObjectId)."""
    if isinstance(value, bool):
        raise EncodeError(f"_id {value!r}: booleans are not supported as _id")
    if isinstance(value, str) or isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, ObjectId):
        return value.binary
    raise EncodeError(f"_id {value!r} ({type(value).__name__}): the embedded store supports string, integer and "
                      "ObjectId ids")


def id_hash(column_value) -> int:
    """A signed 64-bit hash of an `id` column value (what the `idh` index holds; `_id` equality is then
    checked exactly on the row, so a collision costs a comparison, never a wrong match)."""
    import hashlib

    if isinstance(column_value, str):
        data = b"s" + column_value.encode("utf-8", "surrogatepass")
    elif isinstance(column_value, int):
        data = b"i" + str(column_value).encode()
    else:
        data = b"o" + bytes(column_value)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def id_from_column(value):
    if isinstance(value, bytes):
        return ObjectId(value)
    return value
