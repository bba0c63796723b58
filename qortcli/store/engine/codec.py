"""How documents and indexed values are stored in a collection file.

- A document is stored as its BSON (pymongo's `bson`, so it round-trips exactly as MongoDB would keep it:
  datetimes to the millisecond, UTC) compressed with raw DEFLATE against a per-collection preset dictionary
  (`zlib` `zdict`). Field names repeat in every document of a collection, so a dictionary built from the
  collection's first documents shrinks a 580-byte option document to about 160 bytes, and each document
  stays independently readable (no block decompression to read one).
  Body layout: one header byte — 0 = plain BSON, n ≥ 1 = DEFLATE with dictionary n — then the payload.
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
DICT_MAX_BYTES = 32 * 1024          # zlib's preset dictionary window
DICT_SAMPLE_DOCS = 24
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


def encode_body(doc: dict, dict_id: int, dictionary: bytes | None) -> bytes:
    raw = bson.encode(doc, codec_options=CODEC_OPTIONS)
    return pack(raw, dict_id, dictionary)


def pack(raw: bytes, dict_id: int, dictionary: bytes | None) -> bytes:
    if dict_id and dictionary:
        comp = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        packed = comp.compress(raw) + comp.flush()
        if len(packed) + 1 < len(raw):
            return bytes((dict_id,)) + packed
    return b"\x00" + raw


def unpack(body: bytes, dictionaries: dict[int, bytes]) -> bytes:
    """The BSON bytes of a stored body (KeyError for an unknown dictionary id)."""
    head = body[0]
    if head == 0:
        return body[1:]
    decomp = zlib.decompressobj(-15, dictionaries[head])
    return decomp.decompress(body[1:]) + decomp.flush()


def decode_body(body: bytes, dictionaries: dict[int, bytes]) -> dict:
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


def id_from_column(value):
    if isinstance(value, bytes):
        return ObjectId(value)
    return value
