"""Small, valid image and video bytes for the fakes to return (no imaging library needed)."""

from __future__ import annotations

import struct
import zlib


def png(seed: int = 0, size: int = 8) -> bytes:
    """A ``size`` x ``size`` RGB PNG whose colour depends on ``seed`` (so outputs are distinguishable)."""
    rgb = bytes(((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    raw = b"".join(b"\x00" + rgb * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def mp4(seed: int = 0) -> bytes:
    """Bytes that start like an MP4 file (an ``ftyp`` box); enough for type detection and round trips."""
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
    return ftyp + bytes([seed % 256]) * 64


def gif(seed: int = 0) -> bytes:
    return b"GIF89a" + bytes([seed % 256]) * 32
