"""`python -m firmware_bridge.sim_robot robot=furuta`: the robot's stand-in on a serial port.

Creates a pseudo-terminal (or opens `port=`), prints `PORT <path>` as its first stdout line,
optionally places a symlink to it (`port_link=PATH`), and behaves like the robot's
microcontroller: runs the robot's MJCF in real time at its physics rate, speaks the wire
protocol (docs/protocol.md) through the same state machine as the firmware
(`firmware_bridge/sim/controller.py`), enforces enable and the watchdog, and reports sensors
through the robot spec's sensor model (quantization, noise, bias).

To rehearse against a plant that is not the training model: `model_xml=PATH` (an MJCF
with the same sensors and actuators), `reality=PATH` (a reality perturbation in the
randomization schema), `latency_s=` (command latency) and `sensor_noise_std=`.
Logs what it does to stderr; on SIGTERM/SIGINT it goes safe, removes the link and prints
a one-line JSON summary.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
import tty
from collections import deque
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from ppo_robot.cli import UserError, run_app, write_summary

log = logging.getLogger("sim_robot")


class Plant:
    """The robot's MJCF stepped one physics step at a time, with the spec's sensor model."""

    def __init__(self, spec, cfg: Any) -> None:
        from envs.randomization import Randomization, apply_reality, load

        self.spec = spec
        self.model = spec.load_model(cfg.model_xml)
        rand = load(cfg.reality) if cfg.reality else Randomization()
        self.binder, self.pert = apply_reality(
            rand, self.model, tuple(s.name for s in spec.sensors), cfg.seed
        )
        self.data = mujoco.MjData(self.model)
        self.sensor_idx = spec.sensor_index(self.model)
        self.rng = np.random.default_rng(cfg.seed)
        n = spec.n_sensors
        self.noise_std = np.full(n, float(cfg.sensor_noise_std)) + self.binder.obs_noise_std
        self.bias = self.pert.sensor_bias if self.pert.sensor_bias is not None else np.zeros(n)
        self.resolution = spec.resolution * self.pert.resolution_scale
        self.action_noise = rand.action_noise_std
        self.latency_s = float(cfg.latency_s) + self.pert.latency_s
        self.dt = self.model.opt.timestep
        self.initial_qpos = (
            None if cfg.initial_qpos is None else np.asarray(cfg.initial_qpos, float)
        )
        if self.initial_qpos is not None and self.initial_qpos.size != self.model.nq:
            raise UserError(
                f"initial_qpos: needs {self.model.nq} values, got {self.initial_qpos.size}"
            )
        self.reset()
        self._buf = np.zeros((1, n))

    def reset(self) -> None:
        mujoco.mj_resetData(self.model, self.data)
        if self.initial_qpos is not None:
            self.data.qpos[:] = self.initial_qpos
        mujoco.mj_forward(self.model, self.data)

    def step(self, ctrl: np.ndarray) -> None:
        c = ctrl
        if self.action_noise > 0 and np.any(ctrl != 0):
            c = ctrl + self.rng.normal(0.0, self.action_noise, ctrl.shape)
        lo, hi = self.model.actuator_ctrlrange[:, 0], self.model.actuator_ctrlrange[:, 1]
        self.data.ctrl[:] = np.clip(c, lo, hi)
        mujoco.mj_step(self.model, self.data)

    def sensors(self) -> np.ndarray:
        noise = (
            self.rng.normal(0.0, 1.0, self.noise_std.shape) * self.noise_std
            if self.noise_std.any()
            else None
        )
        return self.spec.read_sensors(
            self.data.sensordata[None],
            self.sensor_idx,
            self.resolution,
            noise,
            self.bias,
            out=self._buf,
        )[0]


class _Port:
    """A pseudo-terminal we own (master side), or a serial port opened by URL."""

    def __init__(self, port: str | None) -> None:
        self.serial = None
        if port is None:
            self.fd, self._slave = os.openpty()
            tty.setraw(self._slave)
            os.set_blocking(self.fd, False)
            self.path = os.ttyname(self._slave)
        else:
            from firmware_bridge.wire.link import LinkError, open_serial

            try:
                self.serial = open_serial(port, 1_000_000)
            except LinkError as e:
                raise UserError(str(e)) from None
            self.fd = self.serial.fileno()
            self.path = port
        self.tx_dropped = 0

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: no process has the slave open
            return b""

    def write(self, data: bytes) -> None:
        try:
            n = os.write(self.fd, data)
            if n < len(data):
                self.tx_dropped += 1
        except (BlockingIOError, OSError):
            self.tx_dropped += 1

    def close(self) -> None:
        if self.serial is not None:
            self.serial.close()
        else:
            os.close(self.fd)
            os.close(self._slave)


def serve(cfg: Any) -> dict[str, Any]:
    from envs.randomization import RandomizationError
    from envs.robots import get_robot
    from envs.spec import SpecError
    from firmware_bridge.sim.controller import Controller, ControllerConfig

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="sim_robot: %(message)s")
    try:
        spec = get_robot(cfg.robot)
        plant = Plant(spec, cfg)
    except (SpecError, RandomizationError) as e:
        raise UserError(str(e)) from None
    if cfg.watchdog_ms < 1:
        raise UserError(f"watchdog_ms must be >= 1, got {cfg.watchdog_ms}")
    boot_id = (
        int(cfg.boot_id) if cfg.boot_id is not None else int.from_bytes(os.urandom(4), "little")
    )
    ccfg = ControllerConfig.for_spec(
        spec,
        min_rate_hz=int(cfg.min_rate_hz),
        max_rate_hz=int(cfg.max_rate_hz),
        watchdog_ms=int(cfg.watchdog_ms),
        boot_id=boot_id,
    )
    try:
        applied = open(cfg.applied_log, "wb") if cfg.applied_log else None  # noqa: SIM115
    except OSError as e:
        raise UserError(f"applied_log {cfg.applied_log} cannot be written ({e.strerror})") from None
    port = _Port(cfg.port)
    link = Path(cfg.port_link) if cfg.port_link else None
    if link is not None:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(port.path)
    ctl = Controller(ccfg, port.write)
    if applied is not None:  # what reached the actuators, to compare with what the host sent
        ctl.on_apply = lambda seq, v: applied.write(
            seq.to_bytes(4, "little") + v.astype("<f4").tobytes()
        )
    print(f"PORT {port.path}", flush=True)
    log.info(
        "robot=%s physics %.0f Hz, watchdog %d ms, latency %.1f ms, boot_id %08x%s",
        spec.name,
        1 / plant.dt,
        ccfg.watchdog_ms,
        plant.latency_s * 1e3,
        boot_id,
        f", reality {cfg.reality}" if cfg.reality else "",
    )

    stop = {"flag": False}

    def _stop(signum, frame) -> None:  # noqa: ARG001
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    dt_ns = int(round(plant.dt * 1e9))
    lat_ns = int(round(plant.latency_s * 1e9))
    pending: deque[tuple[int, np.ndarray]] = deque()
    ctrl = spec.safe_command.copy()
    applied_before = 0
    t0 = time.monotonic_ns()
    k = 0  # physics steps done
    behind_warned = False
    end_ns = int(cfg.duration_s * 1e9) if cfg.duration_s else None
    was_enabled = False
    hellos = 0
    try:
        while not stop["flag"]:
            now = time.monotonic_ns() - t0
            if end_ns is not None and now >= end_ns:
                break
            next_step = (k + 1) * dt_ns
            wait = (next_step - now) / 1e9
            if wait > 0:
                r, _, _ = select.select([port.fd], [], [], wait)
                if r:
                    data = port.read()
                    if data:
                        ctl.receive(data, (time.monotonic_ns() - t0) // 1000)
                continue
            # physics step(s) due
            now_us = now // 1000
            if ctl.enabled:
                if ctl.commands_applied != applied_before:
                    applied_before = ctl.commands_applied
                    pending.append((now + lat_ns, ctl.command.copy()))
                while pending and pending[0][0] <= now:
                    ctrl = pending.popleft()[1]
                was_enabled = True
            else:
                if was_enabled or pending:
                    pending.clear()
                    was_enabled = False
                ctrl = ctl.command  # safe command
                applied_before = ctl.commands_applied
            if cfg.reset_on_hello and ctl.hellos != hellos:
                hellos = ctl.hellos
                plant.reset()
                log.info("HELLO: plant reset to its initial state")
            plant.step(ctrl)
            k += 1
            ctl.poll(now_us, plant.sensors)
            lag = now - k * dt_ns
            if lag > 50_000_000:  # more than 50 ms behind real time: skip ahead
                if not behind_warned:
                    log.warning("physics fell %.0f ms behind real time; skipping ahead", lag / 1e6)
                    behind_warned = True
                k = now // dt_ns
    finally:
        ctl.safe_state()
        port.close()
        if applied is not None:
            applied.close()
        if link is not None and link.is_symlink():
            link.unlink()
    summary = {
        "robot": spec.name,
        "sim_s": round(k * plant.dt, 3),
        "commands_applied": ctl.commands_applied,
        "watchdog_trips": ctl.watchdog_trips,
        "faults": ctl.faults_raised,
        "rx_errors": ctl.parser.stats.dropped_total,
        "tx_dropped": port.tx_dropped,
        "boot_id": boot_id,
    }
    log.info("stopped after %.1f s of simulated time", k * plant.dt)
    write_summary(summary, None)
    return summary


def main() -> None:
    run_app("sim_robot", serve)
