"""`python -m firmware_bridge.sim_robot robot=furuta`: the robot's stand-in on a serial port.

Creates a pseudo-terminal (or opens `port=`), prints `PORT <path>` as its first stdout line,
optionally places a symlink to it (`port_link=PATH`), and behaves like the robot's
microcontroller: runs the robot's MJCF in real time at its physics rate, speaks the wire
protocol (docs/protocol.md) through the same state machine as the firmware
(`firmware_bridge/sim/controller.py`), enforces enable and the watchdog, and reports sensors
through the robot spec's sensor model (quantization, noise, bias).

To rehearse against a plant that is not the training model: `model_xml=PATH` (an MJCF
with the same sensors and actuators), `reality=PATH` (a reality perturbation in the
randomization schema), `latency_s=` (command latency, added to the reality's and rounded
to whole physics steps) and `sensor_noise_std=`. Latency, action noise and the sensor model
are the training engine's own (`envs.plant`).
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
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from firmware_bridge.sim.torque_off import TorqueOff
from ppo_robot.cli import UserError, run_app, write_summary

log = logging.getLogger("sim_robot")


class Plant:
    """The robot's MJCF stepped one physics step at a time, through the one plant model
    (`envs.plant`: latency in physics steps, action noise, the spec's sensor model)."""

    def __init__(self, spec, cfg: Any) -> None:
        from envs.plant import PlantModel, ctrl_bounds, spec_reader
        from envs.randomization import Randomization, apply_reality, load

        self.spec = spec
        self.model = spec.load_model(cfg.model_xml)
        rand = load(cfg.reality, cfg.robot) if cfg.reality else Randomization()
        self.binder, self.pert = apply_reality(
            rand, self.model, tuple(s.name for s in spec.sensors), cfg.seed
        )
        self.data = mujoco.MjData(self.model)
        self.torque = TorqueOff(self.model)  # NaN command = torque off (safe_mode 'off')
        self.sensor_idx = spec.sensor_index(self.model)
        n = spec.n_sensors
        self.latency_s = float(cfg.latency_s) + self.pert.latency_s
        self.dt = self.model.opt.timestep
        lo, hi = ctrl_bounds(self.model)
        self.io = PlantModel(
            1,
            self.dt,
            lo,
            hi,
            spec.safe_command,
            read=spec_reader(spec, self.model),
            base_resolution=spec.resolution,
            obs_noise_std=np.full(n, float(cfg.sensor_noise_std)) + self.binder.obs_noise_std,
            action_noise_std=rand.action_noise_std,
            max_latency_s=self.latency_s,
            seed=cfg.seed,
        )
        self.io.configure(0, self.latency_s, self.pert.sensor_bias, self.pert.resolution_scale)
        self.initial_qpos = (
            None if cfg.initial_qpos is None else np.asarray(cfg.initial_qpos, float)
        )
        if self.initial_qpos is not None and self.initial_qpos.size != self.model.nq:
            raise UserError(
                f"initial_qpos: needs {self.model.nq} values, got {self.initial_qpos.size}"
            )
        self.reset()

    def reset(self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None) -> None:
        """Back to the initial state (or to `qpos`, `qvel`); the command history stays."""
        mujoco.mj_resetData(self.model, self.data)
        q = self.initial_qpos if qpos is None else qpos
        if q is not None:
            self.data.qpos[:] = q
        if qvel is not None:
            self.data.qvel[:] = qvel
        mujoco.mj_forward(self.model, self.data)

    def command(self, cmd: np.ndarray) -> None:
        """A command arrived now; it reaches the actuators after the latency."""
        self.io.command(np.asarray(cmd, dtype=np.float64)[None])

    def hold(self, cmd: np.ndarray) -> None:
        """The actuators see `cmd` from the next step on (no latency): the safe state."""
        self.io.hold(0, np.clip(cmd, self.io.ctrl_low, self.io.ctrl_high))

    def step(self) -> None:
        """One physics step with the control the plant model gives this step."""
        self._apply(self.io.controls(1)[0, 0])
        mujoco.mj_step(self.model, self.data)

    def _apply(self, ctrl: np.ndarray) -> None:
        """The one place a control reaches the model's actuators (NaN = torque off)."""
        self.torque.apply(self.data, ctrl)

    def sensors(self) -> np.ndarray:
        return self.io.sense(self.data.sensordata[None])[0]


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


def _build(cfg: Any):
    """The spec, the plant and the controller's configuration; bad keys are UserErrors."""
    from envs.randomization import RandomizationError
    from envs.robots import get_robot
    from envs.spec import SpecError
    from firmware_bridge.sim.controller import ControllerConfig

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
    return spec, plant, ccfg


def _open_io(cfg: Any) -> tuple[Any, _Port, Path | None]:
    """The applied-command log (or None), the port, and its symlink (or None)."""
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
    return applied, port, link


class _Loop:
    """Physics in real time: the controller's commands through the plant, one step each."""

    def __init__(self, cfg: Any, plant: Plant, ctl, port: _Port) -> None:
        self.cfg, self.plant, self.ctl, self.port = cfg, plant, ctl, port
        self.stop = False
        self.k = 0  # physics steps done
        self._applied_before = 0
        self._was_enabled = False
        self._hellos = 0
        self._behind_warned = False

    def run(self) -> None:
        dt_ns = int(round(self.plant.dt * 1e9))
        end_ns = int(self.cfg.duration_s * 1e9) if self.cfg.duration_s else None
        t0 = time.monotonic_ns()
        while not self.stop:
            now = time.monotonic_ns() - t0
            if end_ns is not None and now >= end_ns:
                break
            wait = ((self.k + 1) * dt_ns - now) / 1e9
            if wait > 0:
                r, _, _ = select.select([self.port.fd], [], [], wait)
                data = self.port.read() if r else b""
                if data:
                    self.ctl.receive(data, (time.monotonic_ns() - t0) // 1000)
                continue
            self._physics_step(now)
            lag = now - self.k * dt_ns
            if lag > 50_000_000:  # more than 50 ms behind real time: skip ahead
                if not self._behind_warned:
                    log.warning("physics fell %.0f ms behind real time; skipping ahead", lag / 1e6)
                    self._behind_warned = True
                self.k = now // dt_ns

    def _physics_step(self, now: int) -> None:
        """Hand the controller's command to the plant, step physics once, let it report."""
        ctl, plant = self.ctl, self.plant
        if ctl.enabled:
            if ctl.commands_applied != self._applied_before:
                self._applied_before = ctl.commands_applied
                plant.command(ctl.command)
            self._was_enabled = True
        else:
            plant.hold(ctl.command)  # the safe command, at once: pending ones are dropped
            self._was_enabled = False
            self._applied_before = ctl.commands_applied
        if self.cfg.reset_on_hello and ctl.hellos != self._hellos:
            self._hellos = ctl.hellos
            plant.reset()
            log.info("HELLO: plant reset to its initial state")
        plant.step()
        self.k += 1
        ctl.poll(now // 1000, plant.sensors)


def serve(cfg: Any) -> dict[str, Any]:
    from firmware_bridge.sim.controller import Controller

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="sim_robot: %(message)s")
    spec, plant, ccfg = _build(cfg)
    applied, port, link = _open_io(cfg)
    ctl = Controller(ccfg, port.write)
    # a 'hold' safe state holds the pose it starts in (read without noise: no RNG draw)
    ctl.safe_state(spec.read_sensors(plant.data.sensordata[None], plant.sensor_idx)[0])
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
        ccfg.boot_id,
        f", reality {cfg.reality}" if cfg.reality else "",
    )
    loop = _Loop(cfg, plant, ctl, port)

    def _stop(signum, frame) -> None:  # noqa: ARG001
        loop.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        loop.run()
    finally:
        ctl.safe_state()
        port.close()
        if applied is not None:
            applied.close()
        if link is not None and link.is_symlink():
            link.unlink()
    summary = {
        "robot": spec.name,
        "sim_s": round(loop.k * plant.dt, 3),
        "commands_applied": ctl.commands_applied,
        "watchdog_trips": ctl.watchdog_trips,
        "faults": ctl.faults_raised,
        "rx_errors": ctl.parser.stats.dropped_total,
        "tx_dropped": port.tx_dropped,
        "boot_id": ccfg.boot_id,
    }
    log.info("stopped after %.1f s of simulated time", loop.k * plant.dt)
    write_summary(summary, None)
    return summary


def main() -> None:
    from firmware_bridge.sim.robot_config import SimRobotConfig

    run_app("sim_robot", serve, SimRobotConfig)
