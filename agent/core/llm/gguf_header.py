"""The header of a GGUF file: its version, tensor count and metadata, read without loading the model.
The model loader and the personal LoRA's adapter files both read it."""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"


class GGUFError(ValueError):
    pass


@dataclass(frozen=True)
class GGUFInfo:
    """What the header of a GGUF file says. Array values are kept as their length only."""

    version: int
    tensor_count: int
    metadata: dict[str, Any]
    parameter_count: int | None = None  # summed from the tensor shapes, when asked for (`tensors=True`)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", ""))

    @property
    def chat_template(self) -> str | None:
        template = self.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) and template.strip() else None

    def arch_int(self, key: str, default: int = 0) -> int:
        value = self.metadata.get(f"{self.architecture}.{key}", default)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf_info(path: Path, tensors: bool = False) -> GGUFInfo:
    """Parse the header and metadata of a GGUF file (not its tensors' data); raise GGUFError.
    With `tensors`, also read the tensor table to count the parameters (many files do not say it)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 24:
            raise GGUFError(f"{path} is {size} bytes: too short to be a GGUF model")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:4] != GGUF_MAGIC:
                raise GGUFError(f"{path} is not a GGUF model (it does not start with the GGUF magic bytes)")
            try:
                return _parse_header(data, size, tensors)
            except (struct.error, UnicodeDecodeError, IndexError) as error:
                raise GGUFError(f"the header of {path} is truncated or corrupt ({error})") from None


def _parse_header(data: mmap.mmap, size: int, tensors: bool = False) -> GGUFInfo:
    (version,) = struct.unpack_from("<I", data, 4)
    if version not in (2, 3):
        raise GGUFError(f"GGUF version {version} is not supported (2 and 3 are)")
    tensor_count, kv_count = struct.unpack_from("<QQ", data, 8)
    if kv_count > 1_000_000 or tensor_count > 10_000_000:
        raise struct.error(f"implausible counts: {kv_count} keys, {tensor_count} tensors")
    pos = 24

    def string(at: int) -> tuple[str, int]:
        (length,) = struct.unpack_from("<Q", data, at)
        if at + 8 + length > size:
            raise struct.error("a string runs past the end of the file")
        return data[at + 8 : at + 8 + length].decode("utf-8"), at + 8 + length

    def skip_strings(at: int, count: int) -> int:
        for _ in range(count):
            (length,) = struct.unpack_from("<Q", data, at)
            at += 8 + length
            if at > size:
                raise struct.error("an array runs past the end of the file")
        return at

    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key, pos = string(pos)
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if kind in _SCALAR_FORMATS:
            fmt = _SCALAR_FORMATS[kind]
            (metadata[key],) = struct.unpack_from(fmt, data, pos)
            pos += struct.calcsize(fmt)
        elif kind == _STRING:
            metadata[key], pos = string(pos)
        elif kind == _ARRAY:
            item_kind, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if item_kind == _STRING:
                pos = skip_strings(pos, count)
            elif item_kind in _SCALAR_FORMATS:
                pos += count * struct.calcsize(_SCALAR_FORMATS[item_kind])
            else:
                raise struct.error(f"unsupported array element type {item_kind} for {key}")
            if pos > size:
                raise struct.error(f"{key} runs past the end of the file")
            metadata[key] = count  # arrays: their length only
        else:
            raise struct.error(f"unknown value type {kind} for {key}")
    if not tensors:
        return GGUFInfo(version, tensor_count, metadata)
    parameters = 0
    for _ in range(tensor_count):  # each: name, dimension count, dimensions, element type, data offset
        _, pos = string(pos)
        (dims,) = struct.unpack_from("<I", data, pos)
        if dims > 8:
            raise struct.error(f"a tensor with {dims} dimensions")
        shape = struct.unpack_from(f"<{dims}Q", data, pos + 4)
        pos += 4 + 8 * dims + 4 + 8
        count = 1
        for extent in shape:
            count *= extent
        parameters += count
    return GGUFInfo(version, tensor_count, metadata, parameters)
