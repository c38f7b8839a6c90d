"""An independent reference framing for the wire protocol v1 tests: CRC-32 from the `crc`
package and COBS written from the paper, so that protocol.py's frames are checked against
code that shares nothing with it (docs/protocol.md)."""

from __future__ import annotations

import crc

CRC32 = crc.Calculator(crc.Crc32.CRC32)


def ref_cobs(data: bytes) -> bytes:
    """COBS written from the paper, independent of the `cobs` package. Input that ends right
    after a full 254-byte block gets no trailing empty block (docs/protocol.md)."""
    out = bytearray()
    block = bytearray()
    after_full_block = False
    for byte in data:
        after_full_block = False
        if byte == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            out += b"\xff" + block
            block.clear()
            after_full_block = True
    if block or not after_full_block:
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def ref_frame(msg_type: int, seq: int, payload: bytes, version: int = 1) -> bytes:
    """A whole frame (version, type, seq, payload, CRC-32, COBS, delimiter) by the reference."""
    body = bytes([version, msg_type]) + seq.to_bytes(4, "little") + payload
    return ref_cobs(body + CRC32.checksum(body).to_bytes(4, "little")) + b"\x00"
