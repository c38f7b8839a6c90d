"""The rollout log: one MCAP file per run, written as the run goes, readable by Foxglove.

Channels (JSON messages, each with a JSON schema):
  /state        every STATE received: seq, controller t_us, status, fault, sensors, host time
  /observation  per tick: the policy observation
  /action       per tick: the policy output (command units, before safety)
  /command      per tick: what was sent (after safety), its seq and the STATE seq it answers
  /timing       per tick: deadline, period error, state age, compute time per stage
  /events       enable, disable, faults, warnings, source changes
Run metadata (MCAP metadata record "run"): policy file hash and metadata, robot layout,
config, host, command source, format version.

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
    ) -> None:
        from mcap.writer import Writer

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
        meta = {"format": FORMAT, **{k: _as_text(v) for k, v in metadata.items()}}
        self._w.add_metadata("run", meta)
        self._f.flush()
        self._q: deque = deque()
        self._max = queue_size
        self.flush_s = flush_s
        self.dropped = 0
        self.written = 0
        self._closed = False
        self._stop = threading.Event()
        self._t0 = time.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name="rollout-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer side (the loop)

    def put(self, topic: str, t_ns: int, msg: dict[str, Any]) -> None:
        """Queue one message; never blocks. A full queue is counted in `dropped`."""
        if len(self._q) >= self._max:
            self.dropped += 1
        else:
            self._q.append((topic, t_ns, msg))

    def tick(
        self,
        t_ns: int,
        tick: int,
        t_host: float,
        obs: np.ndarray,
        action: np.ndarray,
        command: np.ndarray,
        seq: int,
        state_seq: int,
        limited: bool,
        timing: tuple[float, ...],
    ) -> None:
        """One control tick as one queue item (arrays are copied here; the writer thread
        builds the /observation, /action, /command and /timing messages)."""
        item = (
            _TICK,
            t_ns,
            (
                tick,
                t_host,
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

    def state(self, t_ns: int, tick: int, t_host: float, seq: int, msg: Any) -> None:
        """A received STATE (an immutable protocol.State), formatted by the writer thread."""
        if len(self._q) >= self._max:
            self.dropped += 1
        else:
            self._q.append((_STATE, t_ns, (tick, t_host, seq, msg)))

    def event(self, kind: str, message: str, t_host: float | None = None) -> None:
        now = time.monotonic_ns()
        t = (now - self._t0) / 1e9 if t_host is None else t_host
        self.put("/events", now, {"t_host": t, "kind": kind, "message": message})

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
            tick, t_host, obs, action, command, seq, state_seq, limited, timing = msg
            base = {"tick": tick, "t_host": t_host}
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
            tick, t_host, seq, st = msg
            msg = {
                "tick": tick,
                "t_host": t_host,
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
        self._w.add_message(self._chan[topic], log_time=t_ns, data=data, publish_time=t_ns)
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
