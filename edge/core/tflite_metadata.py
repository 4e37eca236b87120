"""Read the maskedge contract out of a `.tflite` file without TensorFlow.

A `.tflite` file is a FlatBuffer whose root `Model` table has a `metadata` vector of
`(name, buffer index)` pairs pointing into its `buffers` vector. The converters write the contract
as one such entry (`edge.core.contract.METADATA_KEY`). This module walks just enough of the
FlatBuffer layout (tables, vtables, vectors, strings) to find it, so any runtime - LiteRT,
tflite_runtime or none at all - can read a model's labels and input size.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edge.core.contract import METADATA_KEY, ContractError, ModelContract

# Field slots in the TFLite schema (tensorflow/lite/schema/schema.fbs).
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2

#: Largest `.tflite` file read (the whole file is read to find its metadata). A MobileNetV2
#: classifier is 3-10 MB; anything this big is not a maskedge model and is refused unread.
MAX_MODEL_BYTES = 200 * 1024 * 1024


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.data, pos)[0]

    def field(self, table: int, slot: int) -> int | None:
        """Absolute position of a table field, or None when the field is absent."""
        vtable = table - struct.unpack_from("<i", self.data, table)[0]
        vt_size = struct.unpack_from("<H", self.data, vtable)[0]
        entry = 4 + 2 * slot
        if entry >= vt_size:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + entry)[0]
        return table + offset if offset else None

    def indirect(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, table: int, slot: int) -> tuple[int, int]:
        """(start of elements, length) of a vector field; (0, 0) when absent."""
        pos = self.field(table, slot)
        if pos is None:
            return 0, 0
        vec = self.indirect(pos)
        return vec + 4, self.u32(vec)

    def table_at(self, vector_start: int, i: int) -> int:
        return self.indirect(vector_start + 4 * i)

    def string(self, table: int, slot: int) -> str | None:
        pos = self.field(table, slot)
        if pos is None:
            return None
        s = self.indirect(pos)
        return self.data[s + 4 : s + 4 + self.u32(s)].decode("utf-8", "replace")

    def u64(self, table: int, slot: int) -> int:
        pos = self.field(table, slot)
        return struct.unpack_from("<Q", self.data, pos)[0] if pos is not None else 0


def read_metadata_entries(data: bytes) -> dict[str, bytes]:
    """All named metadata entries of a TFLite flatbuffer, as raw bytes."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ContractError("not a TFLite model file (no TFL3 identifier)")
    r = _Reader(data)
    try:
        model = r.indirect(0)
        buf_start, buf_len = r.vector(model, _MODEL_BUFFERS)
        meta_start, meta_len = r.vector(model, _MODEL_METADATA)
        entries: dict[str, bytes] = {}
        for i in range(meta_len):
            meta = r.table_at(meta_start, i)
            name = r.string(meta, _METADATA_NAME)
            pos = r.field(meta, _METADATA_BUFFER)
            index = r.u32(pos) if pos is not None else 0
            if name is None or index >= buf_len:
                continue
            buffer = r.table_at(buf_start, index)
            offset, size = r.u64(buffer, _BUFFER_OFFSET), r.u64(buffer, _BUFFER_SIZE)
            if offset > 1:  # large models keep buffer bytes after the flatbuffer
                entries[name] = data[offset : offset + size]
            else:
                start, length = r.vector(buffer, _BUFFER_DATA)
                entries[name] = data[start : start + length]
        return entries
    except (struct.error, IndexError) as exc:
        raise ContractError(f"TFLite model file is truncated or corrupt ({exc})") from None


def read_contract(path: str | Path) -> ModelContract:
    """The maskedge contract embedded in a `.tflite` file (ContractError if it has none)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ContractError(f"{path} is {size / 2**20:,.0f} MB, over the "
                                f"{MAX_MODEL_BYTES // 2**20} MB limit for a model file: refused")
        data = path.read_bytes()
    except OSError as exc:
        raise ContractError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        entries = read_metadata_entries(data)
        if METADATA_KEY not in entries:
            raise ContractError(f"{path} carries no maskedge metadata (was it made by "
                                f"`convert`?)")
        return ModelContract.from_json(entries[METADATA_KEY])
    except ContractError as exc:  # every message names the file
        message = str(exc)
        raise ContractError(message if str(path) in message else f"{path}: {message}") from None
