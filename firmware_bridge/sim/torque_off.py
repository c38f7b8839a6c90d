"""Torque off in simulation: a NaN command entry means that actuator is limp.

The controller stand-in's safe state 'off' (`RobotSpec.safe_command_for`) is NaN, which is
never sent on the wire; the simulated plant turns it into an actuator that produces no
force (gain and bias 0, ctrl 0) until a finite command arrives, then restores the model's
own gains. On the sim floor, beside `sim/robot.py`'s Plant.
"""

from __future__ import annotations

import mujoco
import numpy as np


class TorqueOff:
    """Applies commands to `data.ctrl`, NaN entries as torque off."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.gainprm = model.actuator_gainprm.copy()
        self.biasprm = model.actuator_biasprm.copy()
        self.off = np.zeros(model.nu, dtype=bool)

    def apply(self, data: mujoco.MjData, ctrl: np.ndarray) -> None:
        """`ctrl` (nu,), already clipped; NaN = torque off for that actuator."""
        off = np.isnan(ctrl)
        if off.any() or self.off.any():
            m = self.model
            m.actuator_gainprm[:] = np.where(off[:, None], 0.0, self.gainprm)
            m.actuator_biasprm[:] = np.where(off[:, None], 0.0, self.biasprm)
            self.off = off
        data.ctrl[:] = np.where(off, 0.0, ctrl)
