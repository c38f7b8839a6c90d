"""The schema of `python -m firmware_bridge.deploy` (configs/deploy.yaml), registered as
`deploy_schema` by firmware_bridge.host.deploy. Its `safety` section is the safety layer's
own `SafetyConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware_bridge.host.safety import SafetyConfig


@dataclass
class RecoverSection:
    max: int = 0
    """Recoveries allowed per run from a transient fault (stale state, watchdog, overrun):
    disable, re-handshake, explicit re-enable. 0 = any fault ends the run."""
    backoff_s: float = 0.2
    """Wait this long before the re-handshake."""


@dataclass
class DeployConfig:
    policy: str | None = None
    """Exported ONNX policy (source=policy)."""
    robot: str | None = None
    """Robot spec for source=excitation (and playback, where the log names it)."""
    port: str = "???"
    """Serial device, pseudo-terminal, socket://host:port or loop://."""
    rate_hz: float | None = None
    """Control rate; null = the policy's. Another rate than the policy's is refused."""
    duration_s: float | None = 10.0
    """Run length."""
    log_dir: str = "logs"
    """Folder of the MCAP rollout logs."""
    baud: int = 1_000_000
    """Serial baud (ignored by pseudo-terminals and USB CDC ports, used for the link budget)."""
    check_link_budget: bool = True
    """Refuse a rate the baud cannot carry."""
    handshake_timeout_s: float = 2.0
    """Wait this long for INFO after HELLO."""
    ack_timeout_s: float = 0.5
    """Wait this long for ACK of ENABLE/DISABLE."""
    spin_us: float = 300.0
    """Spin (busy-wait) this long before each deadline, after sleeping."""
    prime: bool = True
    """Run the pure tick stages once before each deadline to warm the CPU caches."""
    realtime_priority: int | None = 50
    """Run the control loop's thread SCHED_FIFO at this priority (1-99) where granted
    (CAP_SYS_NICE: root, or an rtprio limit); else a warning and normal priority. 0 = off."""
    status: bool = True
    """Live status line on stderr."""
    source: str = "policy"
    """Command source: policy, playback or excitation."""
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    """Host safety layer."""
    recover: RecoverSection = field(default_factory=RecoverSection)
    """Recovery from transient link faults."""
    log: str | None = None
    """Playback source: the log whose commands are replayed."""
    excitation: Any = None
    """Excitation source settings (configs/excitation/)."""
    goal: Any = None
    """The task's goal for a goal-directed task (the SO-101 reach target [x, y, z], m);
    null = drawn from the task's own goal distribution with `goal_seed`."""
    goal_seed: int = 0
    """Seed of the drawn goal (goal=null)."""
