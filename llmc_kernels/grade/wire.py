"""What passes between ``llmc grade`` and its learner processes: frames of plain arrays, never pickles.

A frame is an 8-byte little-endian length and that many bytes of an ``.npz`` archive (``numpy.savez``) holding a
JSON object under ``__meta__`` (UTF-8 bytes as a uint8 array) and any number of arrays of plain dtypes. Reading
uses ``allow_pickle=False``, refuses object dtypes and anything larger than the caller's limit, so a learner's
process can send nothing but numbers and JSON: a bad frame is a failed exercise, never code run by the grader.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np

META = "__meta__"
PLAIN_KINDS = "biuf"  # bool, signed, unsigned, float: the only dtypes a frame may carry
MAX_FRAME = 256 << 20  # bytes; a frame beyond it is refused unread


class BadFrame(Exception):
    """A frame that is not what the protocol allows (the learner's process sent something else)."""


def encode(meta: dict, arrays: dict | None = None) -> bytes:
    buf = io.BytesIO()
    payload = {META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for name, a in (arrays or {}).items():
        payload[name] = np.ascontiguousarray(a)
    np.savez(buf, **payload)
    body = buf.getvalue()
    return struct.pack("<Q", len(body)) + body


def write(stream, meta: dict, arrays: dict | None = None) -> None:
    stream.write(encode(meta, arrays))
    stream.flush()


def decode(body: bytes) -> tuple[dict, dict]:
    """``(meta, arrays)`` of one frame's body; BadFrame for anything but plain arrays and a JSON object."""
    try:  # stored entries only (as numpy.savez writes them): no zip bomb
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            if any(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist()):
                raise BadFrame("a compressed archive")
    except zipfile.BadZipFile as e:
        raise BadFrame(f"not an archive ({e})") from None
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except Exception as e:  # a truncated or forged archive raises many types
        raise BadFrame(f"not an archive of plain arrays ({type(e).__name__}: {e})") from None
    raw = arrays.pop(META, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise BadFrame("no metadata in the frame")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadFrame(f"the frame's metadata is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise BadFrame("the frame's metadata is not a JSON object")
    for name, a in arrays.items():
        if a.dtype.kind not in PLAIN_KINDS or a.dtype.hasobject:
            raise BadFrame(f"array {name!r} has dtype {a.dtype}, not a plain number type")
    return meta, arrays


def read(stream, limit: int = MAX_FRAME):
    """Frames from a binary stream until it ends: yields ``(meta, arrays)``; a cut-off last frame is dropped
    (its writer was killed), an oversized or malformed one raises BadFrame."""
    while True:
        head = _exactly(stream, 8)
        if head is None:
            return
        (size,) = struct.unpack("<Q", head)
        if size > limit:
            raise BadFrame(f"a frame of {size} bytes, over the limit of {limit}")
        body = _exactly(stream, size)
        if body is None:
            return
        yield decode(body)


def _exactly(stream, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def checked(arrays: dict, key: str, dtype, shape: tuple) -> np.ndarray:
    """``arrays[key]``, which must have exactly this dtype and shape (BadFrame otherwise)."""
    a = arrays.get(key)
    if a is None:
        raise BadFrame(f"array {key!r} is missing")
    if a.dtype != np.dtype(dtype) or tuple(a.shape) != tuple(shape):
        raise BadFrame(f"array {key!r} is {a.dtype} {tuple(a.shape)}, expected {np.dtype(dtype)} {tuple(shape)}")
    return a
