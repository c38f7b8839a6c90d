"""The reliability tests' rig: a controller process on a pty (sim_robot or the C host
build), `firmware_bridge.faultproxy` in this process between it and `firmware_bridge.deploy`,
and the checks every fault test makes on what the controller applied and what deploy logged.

Used by tests/test_reliability_*.py; faults are injected by the proxy, all real processes
on real pseudo-terminals; what the controller did is read from its own log and from the
STATEs it sent (the proxy taps the intact stream).
Crashes (deploy killed with SIGKILL) are in tests/test_deploy.py and tests/test_firmware.py,
which record their rows too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from firmware_bridge.logs.rollout_log import read_log
from firmware_bridge.tools.faultproxy import FaultProxy, ProxySettings
from tests.conftest import PY, ROOT, start_cli

WATCHDOG_MS = 50
STALE_MS = 50.0
SLACK_MS = 60.0
"""Scheduling slack of this shared 2-core machine on top of a safety deadline."""
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Controller:
    """A controller process on a pty: sim_robot, or the C host build (`binary`)."""

    def __init__(self, *args: str, link: Path, binary: Path | None = None) -> None:
        if binary is None:
            cmd = [PY, "-m", "firmware_bridge.sim_robot", *args, f"port_link={link}"]
        else:
            cmd = [str(binary), *args, "--port-link", str(link)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise AssertionError(f"controller did not start: {line!r} {self.proc.stderr.read()}")
        self.port = line.split()[1]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[dict, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return (json.loads(lines[-1]) if lines else {}), err


def deploy_via(
    proxy: FaultProxy, policy: str, log_dir: Path, *extra: str, duration_s: float = 2.0
) -> subprocess.Popen:
    """`firmware_bridge.deploy` through the proxy, in the background."""
    return start_cli(
        "firmware_bridge.deploy",
        f"policy={policy}",
        f"port={proxy.port}",
        f"duration_s={duration_s}",
        f"log_dir={log_dir}",
        "status=false",
        # timing is benchmarked elsewhere; a busy machine must not end these runs
        "safety.max_consecutive_overruns=100000",
        *extra,
    )


def wait_enabled(
    proxy: FaultProxy, deploy: subprocess.Popen, after_s: float = 0.5, timeout: float = 30.0
) -> None:
    """Until the controller behind the proxy reports its actuators armed, then after_s more."""
    end = time.monotonic() + timeout
    while not proxy.controller.enabled:
        assert deploy.poll() is None, deploy.communicate()
        assert time.monotonic() < end, "the controller was never enabled"
        time.sleep(0.01)
    time.sleep(after_s)


class Rig:
    """controller -> FaultProxy (in this process) -> deploy, for one injected fault."""

    def __init__(self, tmp: Path, settings: ProxySettings | None = None, *ctl_args: str) -> None:
        self.tmp = tmp
        self.applied = tmp / "applied.bin"
        self.ctl = Controller(
            f"watchdog_ms={WATCHDOG_MS}", f"applied_log={self.applied}", *ctl_args, link=tmp / "ctl"
        )
        self.proxy = FaultProxy(str(tmp / "ctl"), settings).start()
        self.deploy: subprocess.Popen | None = None

    def start_deploy(self, policy: str, *extra: str, duration_s: float = 2.0) -> None:
        self.deploy = deploy_via(
            self.proxy, policy, self.tmp / "logs", *extra, duration_s=duration_s
        )

    def wait_enabled(self, after_s: float = 0.5, timeout: float = 30.0) -> None:
        wait_enabled(self.proxy, self.deploy, after_s, timeout)

    def finish(self, timeout: float = 60.0) -> tuple[int, dict | None, str]:
        out, err = self.deploy.communicate(timeout=timeout)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return self.deploy.returncode, (json.loads(lines[-1]) if lines else None), err

    def close(self) -> tuple[dict, str, dict]:
        """Stop everything: (controller summary, controller stderr, proxy summary)."""
        if self.deploy is not None and self.deploy.poll() is None:
            self.deploy.kill()
            self.deploy.communicate()
        proxy = self.proxy.stop()
        ctl, err = self.ctl.stop()
        return ctl, err, proxy

    def injected(self, kind: str) -> list:
        return [r for r in self.proxy.records if r.kind == kind]

    def safe_after(self, kind: str, ctl_err: str) -> tuple[float, str]:
        """ms from the first injected `kind` to the controller's next disarm (a fault it
        raised or a DISABLE), both on the controller's clock (sim_robot's log)."""
        rec = self.injected(kind)[0]
        t_inj = self.proxy.controller.controller_time(self.proxy.t0 + rec.t)
        for m in re.finditer(r"(fault \w+|DISABLE) at t=([\d.]+) s", ctl_err):
            if float(m.group(2)) >= t_inj - 0.001:
                return (float(m.group(2)) - t_inj) * 1e3, m.group(1)
        raise AssertionError(f"the controller never went safe after the {kind}:\n{ctl_err}")


def applied_commands(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=[("seq", "<u4"), ("values", "<f4", (1,))])


def check_applied_as_sent(applied: np.ndarray, log) -> dict[int, np.ndarray]:
    """Every COMMAND the controller applied carries the seq and exact float32 values of one
    the host sent; returns the sent ones by seq."""
    sent = {c["seq"]: np.asarray(c["values"], np.float32) for c in log.topic("/command")}
    for a in applied:
        seq = int(a["seq"])
        assert seq in sent, f"the controller applied COMMAND seq {seq}, never sent"
        assert sent[seq].tobytes() == a["values"].tobytes(), f"seq {seq} applied altered"
    return sent


def check_log(s: dict):
    """The deploy log is whole (not truncated) and holds every tick."""
    log = read_log(s["log"])
    assert not log.truncated and s["log_dropped"] == 0
    assert len(log.topic("/command")) == s["ticks"]
    return log


def inversions(seqs: np.ndarray) -> int:
    return int(np.sum(np.diff(seqs.astype(np.int64)) < 0))
