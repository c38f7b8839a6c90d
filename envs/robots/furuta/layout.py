"""The Furuta pendulum's layout: sensors, actuator, limits, control rate.

A rotary inverted (Furuta) pendulum modelled on the Quanser QUBE-Servo 2; every number and
its source is in README.md beside this file (and in furuta.xml's header). The tasks run on
this layout are in `tasks.py`.
"""

from __future__ import annotations

import numpy as np

from envs.spec import Actuator, RobotSpec, Sensor

ENCODER_COUNTS = 2048
"""QUBE-Servo 2 encoders: 2048 counts per revolution in quadrature."""
ARM_TRAVEL = 2.0
"""Arm travel (rad) either side of its start: the arm_angle sensor's safe envelope, so the
one limit that training terminates on, the host faults on and the firmware raises LIMIT on
(boards/furuta/robot_spec.h is generated from it). The QUBE's cable allows about +-2.3;
the 0.3 rad left is the room to stop in."""
VOLTAGE_LIMIT = 10.0
"""Amplifier limit (V) used in Quanser's lab guides (the amplifier is rated +-15 V)."""
CONTROL_HZ = 100.0
"""Default policy rate: 10 physics steps of 1 ms per control tick."""

_ENC = 2 * np.pi / ENCODER_COUNTS


def layout(control_hz: float = CONTROL_HZ) -> RobotSpec:
    """Sensors: arm and pendulum encoder angles and the velocities the controller estimates.

    Pendulum angle is 0 hanging down and +-pi upright (an encoder zeroed at rest).
    Actuator: motor voltage, +-10 V.
    """
    return RobotSpec(
        name="furuta",
        version=1,
        xml="furuta.xml",
        sensors=(
            Sensor("arm_angle", "rad", -ARM_TRAVEL, ARM_TRAVEL, resolution=_ENC),
            Sensor("pend_angle", "rad", -1e6, 1e6, resolution=_ENC),
            Sensor("arm_velocity", "rad/s", -100.0, 100.0),
            Sensor("pend_velocity", "rad/s", -200.0, 200.0),
        ),
        actuators=(Actuator("motor", "V", -VOLTAGE_LIMIT, VOLTAGE_LIMIT, kind="effort", safe=0.0),),
        control_hz=control_hz,
    )
