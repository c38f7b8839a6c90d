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

A robot whose robot.yaml says `transport: feetech` has no controller of ours: its stand-in
is the servo bus itself (`sim.bus_robot`, one emulated servo per actuator's `bus_id`), on
the same plant, port, printing and summary; `absent_ids`, `error_ids` and `bus_baud` are its
rehearsal faults and are refused for a framed robot.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from typing import Any

from firmware_bridge.sim.plant import Plant
from firmware_bridge.sim.port import Port, log_applied, open_io, run_until_stopped
from firmware_bridge.sim.realtime import RealTimeLoop
from firmware_bridge.sim.robot_config import SimRobotConfig
from ppo_robot.cli import UserError, run_app, typed_config, write_summary

log = logging.getLogger("sim_robot")

BUS_KEYS = ("absent_ids", "error_ids", "error_after_s", "bus_baud")
"""sim_robot keys that only a servo-bus robot has (sim/robot_config.py)."""


def _spec_and_plant(cfg: SimRobotConfig):
    """The robot's spec, its plant and its transport; bad keys are UserErrors."""
    from envs.randomization import RandomizationError
    from envs.robots import get_robot, transport
    from envs.spec import SpecError

    try:
        spec = get_robot(cfg.robot)
        plant = Plant(spec, cfg)
        kind = transport(cfg.robot)
    except (SpecError, RandomizationError) as e:
        raise UserError(str(e)) from None
    return spec, plant, kind


def _controller_config(cfg: Any, spec):
    """The framed controller's configuration; bad keys are UserErrors."""
    from firmware_bridge.sim.controller import ControllerConfig

    given = [k for k in BUS_KEYS if getattr(cfg, k)]
    if given:
        raise UserError(
            f"{given[0]}: only a servo-bus robot has it (robot={cfg.robot} speaks our framed "
            "protocol through its controller)"
        )
    if cfg.watchdog_ms < 1:
        raise UserError(f"watchdog_ms must be >= 1, got {cfg.watchdog_ms}")
    boot_id = (
        int(cfg.boot_id) if cfg.boot_id is not None else int.from_bytes(os.urandom(4), "little")
    )
    return ControllerConfig.for_spec(
        spec,
        min_rate_hz=int(cfg.min_rate_hz),
        max_rate_hz=int(cfg.max_rate_hz),
        watchdog_ms=int(cfg.watchdog_ms),
        boot_id=boot_id,
    )


class _Loop(RealTimeLoop):
    """Physics in real time: the controller's commands through the plant, one step each."""

    def __init__(self, cfg: SimRobotConfig, plant: Plant, ctl, port: Port) -> None:
        super().__init__(plant.dt, cfg.duration_s)
        self.cfg, self.plant, self.ctl, self.port = cfg, plant, ctl, port
        self._applied_before = 0
        self._was_enabled = False
        self._hellos = 0

    def wait(self, timeout_s: float) -> None:
        r, _, _ = select.select([self.port.fd], [], [], timeout_s)
        data = self.port.read() if r else b""
        if data:
            self.ctl.receive(data, (time.monotonic_ns() - self.t0_ns) // 1000)

    def step(self, now_ns: int) -> None:
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
        ctl.poll(now_ns // 1000, plant.sensors)


def serve(raw: Any) -> dict[str, Any]:
    """Serve the robot named by cfg.robot: the framed controller, or its servo bus. The keys
    that depend on the robot (a framed robot's watchdog and no bus keys; a bus robot's
    servo ids and baud) are checked once the robot is loaded (`_controller_config`,
    `bus_robot.bus_faults`)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="sim_robot: %(message)s")
    cfg: SimRobotConfig = typed_config(raw, SimRobotConfig)
    spec, plant, kind = _spec_and_plant(cfg)
    if kind == "feetech":
        from firmware_bridge.sim.bus_robot import serve_bus

        return serve_bus(cfg, spec, plant)
    return _serve_framed(cfg, spec, plant)


def _serve_framed(cfg: SimRobotConfig, spec, plant: Plant) -> dict[str, Any]:
    from firmware_bridge.sim.controller import Controller

    ccfg = _controller_config(cfg, spec)
    applied, port, link = io = open_io(cfg)
    ctl = Controller(ccfg, port.write)
    # a 'hold' safe state holds the pose it starts in (read without noise: no RNG draw)
    ctl.safe_state(spec.read_sensors(plant.data.sensordata[None], plant.sensor_idx)[0])
    if applied is not None:  # what reached the actuators, to compare with what the host sent
        ctl.on_apply = lambda seq, v: log_applied(applied, seq, v)
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
    run_until_stopped(loop, io, ctl.safe_state)
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
    run_app("sim_robot", serve, SimRobotConfig)
