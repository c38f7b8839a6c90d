"""The rollout log: one MCAP file per run, written as the run goes, readable by Foxglove.

Channels (JSON messages, each with a JSON schema):
  /state        every STATE received: seq, controller t_us, status, fault, sensors, host time
  /observation  per tick: the policy observation
  /action       per tick: the policy output (command units, before safety)
  /command      per tick: what was sent (after safety), its seq and the STATE seq it answers
  /timing       per tick: deadline, period error, state age, compute time per stage
  /events       enable, disable, faults, warnings, source changes
Run metadata (MCAP metadata record "run"): policy file hash and metadata, robot layout,
config, host, command source, format version, and the clock.

One clock: every message on every channel is stamped from the log's host clock
(`time.monotonic_ns` in a deploy; a simulation's own clock in a simulated episode), whose
reading when the log was opened is the origin. `t_host` is seconds since that origin;
MCAP's `log_time` (and `publish_time`) is the same instant in nanoseconds since the Unix
epoch: `clock.origin_unix_ns + t_host * 1e9`, so Foxglove and replay show one timeline
(the "clock" entry of the run metadata states it). The controller's `t_us` is its own
64-bit clock since its boot, logged as received.

A background thread writes from a bounded queue, so logging never stalls the control loop;
a full queue is counted (`dropped`) and reported, never silent. The queue is a plain deque
that the writer drains on its own schedule (every `flush_s / 2`): a put wakes no thread,
so the loop is never made to hand the interpreter lock to the writer mid-tick. Messages are written
unchunked and the file is flushed at least every `flush_s` (default 50 ms), so a killed
process leaves a file readable up to its last flush; `read_log` reads such a file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = "ppo-robot-log/1"

_NUM_ARRAY = {"type": "array", "items": {"type": "number"}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "/state": {
        "tick": {"type": "integer"},
        "t_host": {"type": "number"},
        "seq": {"type": "integer"},
        "t_us": {"type": "integer"},
        "status": {"type": "integer"},
        "fault": {"type": "integer"},
        "last_cmd_seq": {"type": "integer"},
        "rx_errors": {"type": "integer"},
        "sensors": _NUM_ARRAY,
    },
    "/observation": {"tick": {"type": "integer"}, "t_host": {"type": "number"}, "obs": _NUM_ARRAY},
    "/action": {"tick": {"type": "integer"}, "t_host": {"type": "number"}, "action": _NUM_ARRAY},
    "/command": {
        "tick": {"type": "integer"},
        "t_host": {"type": "number"},
        "seq": {"type": "integer"},
        "state_seq": {"type": "integer"},
        "values": _NUM_ARRAY,
        "limited": {"type": "boolean"},
    },
    "/timing": {
        "tick": {"type": "integer"},
        "t_host": {"type": "number"},
        "deadline": {"type": "number"},
        "period_error_us": {"type": "number"},
        "state_age_ms": {"type": "number"},
        "compute_us": {"type": "number"},
        "obs_us": {"type": "number"},
        "policy_us": {"type": "number"},
        "safety_us": {"type": "number"},
        "send_us": {"type": "number"},
        "missed": {"type": "boolean"},
    },
    "/events": {
        "t_host": {"type": "number"},
        "kind": {"type": "string"},
        "message": {"type": "string"},
    },
}


class RolloutLog:
    """Writes one run to an MCAP file from a background thread."""

    def __init__(
        self,
        path: str | Path,
        metadata: dict[str, Any],
        queue_size: int = 65536,
        flush_s: float = 0.05,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """`clock`: the host clock in ns that every `t_ns` given to this log is read on;
        its reading now is the origin of `t_host` (module docstring)."""
        from mcap.writer import Writer

        self.clock = clock
        self.origin_ns = clock()
        self.origin_unix_ns = time.time_ns()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")  # noqa: SIM115 - open for the whole run, closed in close()
        self._w = Writer(self._f, use_chunking=False, enable_crcs=True)
        self._w.start(profile="", library="ppo-robot")
        self._chan: dict[str, int] = {}
        for topic, props in SCHEMAS.items():
            sid = self._w.register_schema(
                name=f"ppo_robot{topic.replace('/', '.')}",
                encoding="jsonschema",
                data=json.dumps({"type": "object", "properties": props}).encode(),
            )
            self._chan[topic] = self._w.register_channel(
                topic=topic, message_encoding="json", schema_id=sid
            )
        clock_meta = {
            "origin_unix_ns": self.origin_unix_ns,
            "t_host": "seconds since the origin, on the host clock",
            "log_time": "origin_unix_ns + t_host * 1e9 (ns since the Unix epoch)",
            "t_us": "the controller's own clock, microseconds since its boot (64-bit)",
        }
        meta = {
            "format": FORMAT,
            "clock": _as_text(clock_meta),
            **{k: _as_text(v) for k, v in metadata.items()},
        }
        self._w.add_metadata("run", meta)
        self._f.flush()
        self._q: deque = deque()
        self._max = queue_size
        self.flush_s = flush_s
        self.dropped = 0
        self.written = 0
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollout-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer side (the loop)

    def put(self, topic: str, t_ns: int, msg: dict[str, Any]) -> None:
        """Queue one message stamped `t_ns` on the log's clock (its `t_host`, if it has one,
        must be `self.t_host(t_ns)`); never blocks. A full queue is counted in `dropped`."""
        if len(self._q) >= self._max:
            self.dropped += 1
        else:
            self._q.append((topic, t_ns, msg))

    def t_host(self, t_ns: int) -> float:
        """Seconds since the log's origin of a reading `t_ns` of its clock."""
        return (t_ns - self.origin_ns) / 1e9

    def tick(
        self,
        t_ns: int,
        tick: int,
        obs: np.ndarray,
        action: np.ndarray,
        command: np.ndarray,
        seq: int,
        state_seq: int,
        limited: bool,
        timing: tuple[float, ...],
    ) -> None:
        """One control tick, started at `t_ns` on the log's clock, as one queue item (arrays
        are copied here; the writer thread builds the /observation, /action, /command and
        /timing messages)."""
        item = (
            _TICK,
            t_ns,
            (
                tick,
                obs.copy(),
                action.copy(),
                command.copy(),
                seq,
                state_seq,
                limited,
                timing,
            ),
        )
        if len(self._q) >= self._max:
            self.dropped += 1
        else:
            self._q.append(item)

    def state(self, t_ns: int, tick: int, seq: int, msg: Any) -> None:
        """A STATE (an immutable protocol.State) received at `t_ns` on the log's clock,
        formatted by the writer thread."""
        if len(self._q) >= self._max:
            self.dropped += 1
        else:
            self._q.append((_STATE, t_ns, (tick, seq, msg)))

    def event(self, kind: str, message: str, t_host: float | None = None) -> None:
        """An event now, or at `t_host` seconds since the origin (a simulated episode)."""
        t_ns = self.clock() if t_host is None else self.origin_ns + round(t_host * 1e9)
        self.put("/events", t_ns, {"t_host": self.t_host(t_ns), "kind": kind, "message": message})

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.flush_s / 2)
            self._drain()
            self._f.flush()
        self._drain()

    def _drain(self) -> None:
        q = self._q
        while q:
            self._write(q.popleft())

    def _write(self, item: tuple[str, int, Any]) -> None:
        topic, t_ns, msg = item
        if topic is _TICK:
            tick, obs, action, command, seq, state_seq, limited, timing = msg
            base = {"tick": tick, "t_host": self.t_host(t_ns)}
            self._emit("/observation", t_ns, {**base, "obs": obs.tolist()})
            self._emit("/action", t_ns, {**base, "action": action.tolist()})
            self._emit(
                "/command",
                t_ns,
                {
                    **base,
                    "seq": seq,
                    "state_seq": state_seq,
                    "values": command.tolist(),
                    "limited": limited,
                },
            )
            self._emit("/timing", t_ns, {**base, **dict(zip(TIMING_FIELDS, timing, strict=True))})
            return
        if topic is _STATE:
            tick, seq, st = msg
            msg = {
                "tick": tick,
                "t_host": self.t_host(t_ns),
                "seq": seq,
                "t_us": st.t_us,
                "status": int(st.status),
                "fault": int(st.fault),
                "last_cmd_seq": st.last_cmd_seq,
                "rx_errors": st.rx_errors,
                "sensors": st.sensors.tolist(),
            }
            topic = "/state"
        self._emit(topic, t_ns, msg)

    def _emit(self, topic: str, t_ns: int, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, default=_jsonable, allow_nan=True).encode()
        stamp = max(0, self.origin_unix_ns + (t_ns - self.origin_ns))
        self._w.add_message(self._chan[topic], log_time=stamp, data=data, publish_time=stamp)
        self.written += 1

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=10)
        if summary is not None:
            self._w.add_metadata("summary", {k: _as_text(v) for k, v in summary.items()})
        self._w.finish()
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()

    def __enter__(self) -> RolloutLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TICK = "/tick"
_STATE = "/state-raw"
TIMING_FIELDS = (
    "deadline",
    "period_error_us",
    "state_age_ms",
    "compute_us",
    "obs_us",
    "policy_us",
    "safety_us",
    "send_us",
    "missed",
)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def _as_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=_jsonable)


# ----------------------------------------------------------------------------- reading


@dataclass
class LogData:
    """A rollout log read back: metadata and messages per topic, in log order."""

    path: Path
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    log_time_ns: dict[str, list[int]] = field(default_factory=dict)
    truncated: bool = False
    """The file ended mid-record (a killed writer): everything before that was read."""
    problem: str | None = None

    def topic(self, name: str) -> list[dict[str, Any]]:
        return self.messages.get(name, [])

    def array(self, topic: str, key: str) -> np.ndarray:
        rows = self.topic(topic)
        return np.array([r[key] for r in rows], dtype=np.float64) if rows else np.zeros((0,))

    @property
    def run(self) -> dict[str, Any]:
        """The run metadata, JSON fields decoded."""
        out: dict[str, Any] = {}
        for k, v in self.metadata.get("run", {}).items():
            try:
                out[k] = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                out[k] = v
        return out


class LogError(ValueError):
    """A file that is not a ppo-robot rollout log at all."""


def read_log(path: str | Path) -> LogData:
    """Read a rollout log, tolerating a truncated end (a killed writer)."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Metadata
    from mcap.stream_reader import StreamReader

    p = Path(path)
    if not p.is_file():
        raise LogError(f"log not found: {p}")
    data = LogData(path=p)
    channels: dict[int, str] = {}
    with open(p, "rb") as f:
        head = f.read(8)
        if head != b"\x89MCAP0\r\n":
            raise LogError(f"{p} is not an MCAP file")
        f.seek(0)
        reader = StreamReader(f, skip_magic=False, emit_chunks=False, validate_crcs=False)
        try:
            for rec in reader.records:
                if isinstance(rec, Channel):
                    channels[rec.id] = rec.topic
                elif isinstance(rec, Metadata):
                    data.metadata[rec.name] = dict(rec.metadata)
                elif isinstance(rec, Message):
                    topic = channels.get(rec.channel_id, "?")
                    try:
                        msg = json.loads(rec.data)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    data.messages.setdefault(topic, []).append(msg)
                    data.log_time_ns.setdefault(topic, []).append(rec.log_time)
        except (McapError, EOFError, ValueError, OSError) as e:
            data.truncated = True
            data.problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        except Exception as e:  # the mcap reader raises struct.error etc. at a cut record
            data.truncated = True
            data.problem = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if "run" not in data.metadata:
        if not data.messages:
            raise LogError(f"{p} is an MCAP file but not a ppo-robot rollout log (no run metadata)")
        data.problem = (data.problem or "") + " no run metadata"
    elif data.metadata["run"].get("format") != FORMAT:
        raise LogError(
            f"{p}: log format {data.metadata['run'].get('format')!r}, this ppo-robot reads {FORMAT}"
        )
    return data


def controller_seconds(t_us: Any) -> tuple[np.ndarray, int | None]:
    """Logged STATE stamps (the controller's 64-bit microsecond clock, in arrival order) ->
    seconds, and the index of the first STATE of a new boot (None if the controller did
    not reset).

    The clock does not wrap. A reset starts it again from near zero: it shows as
    `RESET_AFTER_OLD_STATES` STATEs in a row stamped earlier than the newest one seen (the
    host loop's rule, on seqs); fewer are STATEs the link duplicated, delayed or reordered.
    """
    from firmware_bridge.wire.protocol import RESET_AFTER_OLD_STATES as K

    t = np.asarray(t_us, dtype=np.int64)
    seconds = t / 1e6
    if t.size <= K:
        return seconds, None
    behind = np.zeros(t.size, dtype=bool)
    behind[1:] = t[1:] < np.maximum.accumulate(t)[:-1]
    runs = np.lib.stride_tricks.sliding_window_view(behind, K).all(axis=1)
    return seconds, (int(np.argmax(runs)) if runs.any() else None)
