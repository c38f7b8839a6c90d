"""Fuzzes FrameParser with random and mutated frames and measures its throughput.

Feeds --frames items (default 1,000,000) through one parser in random-sized chunks: valid
frames, frames with bit flips, substituted or swapped bytes, truncations (with and without
their delimiter), inserted or glued-on garbage, doubled delimiters, runs longer than any
frame, random bytes, and CRC-valid frames with a bad version, type or length. Checks that
nothing raises, that no frame is accepted unless it is byte for byte a frame we encoded
(a false accept), and that every intact frame preceded by a delimiter is accepted.

    python benchmarks/fuzz.py --frames 1000000

Ends with one JSON line on stdout; `seconds` and `frames_per_s` time the parser only.
Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_bridge.firmware.make_vectors import reject_vectors  # noqa: E402
from firmware_bridge.wire.protocol import (  # noqa: E402
    Ack,
    Command,
    Disable,
    DropKind,
    Enable,
    Fault,
    FaultCode,
    FrameParser,
    Hello,
    Info,
    Message,
    MsgType,
    ProtocolError,
    State,
    Status,
    encode,
)

MUTATIONS = {  # name: weight
    "intact": 40,
    "doubled_delimiters": 5,
    "bit_flips": 15,
    "byte_substitution": 5,
    "swapped_bytes": 3,
    "truncated": 6,
    "truncated_no_delimiter": 3,
    "inserted_garbage": 6,
    "glued_garbage": 3,
    "random_bytes": 8,
    "overlong_run": 2,
    "protocol_reject": 4,
}


def random_message(rng: random.Random) -> Message:
    kind = rng.randrange(8)
    if kind == 0:
        return Hello(rng.choice([0, 50, 100, 250, 500, 1000, rng.randrange(65536)]))
    if kind == 1:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_-") for _ in range(rng.randrange(33)))
        return Info(1, (1, rng.randrange(10), rng.randrange(100)), rng.getrandbits(32), 4, 1, 50,
                    1000, 100, name)  # fmt: skip
    if kind in (2, 3):
        sensors = np.array([rng.gauss(0.0, 3.0) for _ in range(rng.choice([4, 4, 8, 16]))])
        return State(rng.getrandbits(40), Status(rng.randrange(16)), rng.randrange(6),
                     rng.getrandbits(32), rng.randrange(65536), sensors)  # fmt: skip
    if kind == 4:
        values = [rng.uniform(-10.0, 10.0) for _ in range(rng.choice([1, 1, 3, 12]))]
        return Command(rng.getrandbits(32), values)
    if kind == 5:
        return rng.choice([Enable(), Disable()])
    if kind == 6:
        return Ack(rng.getrandbits(32), rng.choice([MsgType.ENABLE, MsgType.DISABLE]),
                   rng.randrange(6))  # fmt: skip
    text = "".join(rng.choice("abcdef ghij:0123456789") for _ in range(rng.randrange(49)))
    return Fault(FaultCode(rng.randrange(1, 6)), rng.getrandbits(48), text)


def nonzero_bytes(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n).replace(b"\x00", b"\x01")


def mutate(rng: random.Random, how: str, frame: bytes, rejects: list[bytes]) -> bytes:
    """The bytes of one fuzz item built from a valid frame (delimiter included)."""
    n = len(frame)
    if how == "intact":
        return frame
    if how == "doubled_delimiters":
        return b"\x00" * rng.randrange(3) + frame + b"\x00" * rng.randrange(1, 4)
    if how == "bit_flips":
        out = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
        return bytes(out)
    if how == "byte_substitution":
        out = bytearray(frame)
        out[rng.randrange(n - 1)] = rng.randrange(256)
        return bytes(out)
    if how == "swapped_bytes":
        i = rng.randrange(n - 2)
        return frame[:i] + frame[i + 1 : i + 2] + frame[i : i + 1] + frame[i + 2 :]
    if how == "truncated":
        return frame[: rng.randrange(n - 1)] + b"\x00"
    if how == "truncated_no_delimiter":
        return frame[: rng.randrange(1, n - 1)]
    if how == "inserted_garbage":  # never at 0: garbage ending in 0x00 would leave the frame whole
        i = rng.randrange(1, n - 1)
        return frame[:i] + rng.randbytes(rng.randrange(1, 9)) + frame[i:]
    if how == "glued_garbage":
        return nonzero_bytes(rng, rng.randrange(1, 20)) + frame
    if how == "random_bytes":
        return rng.randbytes(rng.randrange(1, 300))
    if how == "overlong_run":
        return nonzero_bytes(rng, rng.randrange(258, 700)) + b"\x00"
    if how == "protocol_reject":
        return rng.choice(rejects)
    raise ValueError(how)


@dataclass
class _Tally:
    """What the fuzz run fed and what the parser gave back, over all batches."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MUTATIONS, 0))
    """Items made by each mutation."""
    accepted: int = 0
    expected: int = 0
    """Intact frames preceded by a delimiter: each must be accepted."""
    false_accepts: int = 0
    total_bytes: int = 0
    parse_seconds: float = 0.0
    """Time spent in FrameParser.feed only."""
    preceded: bool = True
    """The stream so far ends with a delimiter (or is empty)."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=4096, help="distinct valid frames")
    ap.add_argument("--batch", type=int, default=20_000, help="items per batch")
    ap.add_argument("--max-chunk", type=int, default=2048, help="largest feed()")
    return ap.parse_args(argv)


def _batch_stream(
    rng: random.Random, size: int, pool: list[bytes], rejects: list[bytes], tally: _Tally
) -> bytes:
    """`size` fuzz items, each a mutation of a pool frame, as one byte stream; counts the
    mutations and the frames that must be accepted."""
    names, weights = list(MUTATIONS), list(MUTATIONS.values())
    items = []
    for how in rng.choices(names, weights, k=size):
        frame = pool[rng.randrange(len(pool))]
        item = mutate(rng, how, frame, rejects)
        tally.counts[how] += 1
        intact = item == frame or how == "doubled_delimiters"
        if intact and (tally.preceded or item[0] == 0):
            tally.expected += 1
        tally.preceded = item[-1] == 0
        items.append(item)
    stream = b"".join(items)
    tally.total_bytes += len(stream)
    return stream


def _feed(
    rng: random.Random, parser: FrameParser, stream: bytes, max_chunk: int, tally: _Tally
) -> list[tuple[int, Message]]:
    """The stream fed to the parser in random-sized chunks (the feeding alone timed)."""
    cuts = [0]
    while cuts[-1] < len(stream):
        cuts.append(cuts[-1] + rng.randrange(1, max_chunk + 1))
    chunks = [stream[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    results = []
    t0 = time.perf_counter()
    for chunk in chunks:
        results.extend(parser.feed(chunk))
    tally.parse_seconds += time.perf_counter() - t0
    return results


def _genuine(seq: int, msg: Message, known: set[bytes]) -> bool:
    """The accepted message is byte for byte a frame we encoded."""
    try:
        return encode(msg, seq) in known
    except ProtocolError:
        return False


def _report(frames: int, parser: FrameParser, tally: _Tally, started: float) -> dict:
    stats = parser.stats
    dropped = {kind.value: stats.dropped(kind) for kind in DropKind}
    dropped["total"] = stats.dropped_total
    return {
        "frames": frames,
        "bytes": tally.total_bytes,
        "accepted": tally.accepted,
        "expected_accepts": tally.expected,
        "false_accepts": tally.false_accepts,
        "dropped": dropped,
        "bytes_discarded": stats.bytes_discarded,
        "mutations": tally.counts,
        "seconds": round(tally.parse_seconds, 3),
        "frames_per_s": round(frames / tally.parse_seconds),
        "total_seconds": round(time.perf_counter() - started, 3),
    }


def _failures(parser: FrameParser, tally: _Tally) -> list[str]:
    """The checks: no false accept, every expected frame accepted, the stats agree."""
    accepted, false_accepts = tally.accepted, tally.false_accepts
    failures = []
    if false_accepts:
        failures.append(f"{false_accepts} false accepts")
    if accepted - false_accepts != tally.expected:
        failures.append(
            f"accepted {accepted - false_accepts} genuine frames, expected {tally.expected}"
        )
    if parser.stats.frames_ok != accepted:
        failures.append(f"stats.frames_ok {parser.stats.frames_ok} != {accepted} returned")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    rng = random.Random(args.seed)
    pool = [encode(random_message(rng), rng.getrandbits(32)) for _ in range(args.pool)]
    known = set(pool)
    rejects = [frame for _, frame in reject_vectors()]
    parser = FrameParser()
    tally = _Tally()
    started = time.perf_counter()
    done = 0
    while done < args.frames:
        size = min(args.batch, args.frames - done)
        stream = _batch_stream(rng, size, pool, rejects, tally)
        results = _feed(rng, parser, stream, args.max_chunk, tally)
        tally.false_accepts += sum(not _genuine(seq, msg, known) for seq, msg in results)
        tally.accepted += len(results)
        done += size
    report = _report(args.frames, parser, tally, started)
    failures = _failures(parser, tally)
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
