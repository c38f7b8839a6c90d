"""The plant between a command and the sensor readings, for N envs at once (N = 1 for one robot).

What happens around the physics is modelled here once, for the training engine
(`envs/batched.py`), the simulated robot (`firmware_bridge/sim/robot.py`) and the simulated
episodes (`firmware_bridge/sim/episodes.py`), so that a reality means the same everywhere:

- a command gets action noise (one draw per command) and is clipped to the control range;
- it reaches the actuators after the env's latency, counted in physics substeps
  (`rint(latency_s / timestep)`): a command issued when `clock` substeps have been simulated
  is the control of substep `clock + delay` onwards, until a newer one arrives;
- a reading is the spec's sensor model (`read_sensors`) on MuJoCo's sensordata with the
  env's bias, fresh Gaussian noise and the env's resolution.

Physics is not stepped here: the caller asks `controls(S)` for the ctrl of the next S
substeps (one batched array) and steps MuJoCo with it. Noise comes from the plant's own
generators, derived from the seed; `snapshot`/`restore` continue bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

_STREAM_KEY = 0x706C616E  # "plan": the plant's streams, apart from the caller's generator
_FAR_PAST = np.iinfo(np.int64).min // 2

Reader = Callable[[np.ndarray, "np.ndarray | None", np.ndarray, np.ndarray], "np.ndarray | None"]
"""(sensordata (n, nsensordata), noise or None, bias (n, ns), resolution (n, ns)) -> readings."""


def ctrl_bounds(model: mujoco.MjModel, index: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(low, high) of each actuator's control (+-inf where not ctrllimited), in `index` order."""
    lo = np.where(model.actuator_ctrllimited, model.actuator_ctrlrange[:, 0], -np.inf)
    hi = np.where(model.actuator_ctrllimited, model.actuator_ctrlrange[:, 1], np.inf)
    return (lo, hi) if index is None else (lo[index], hi[index])


def spec_reader(spec, model: mujoco.MjModel) -> Reader:
    """A robot spec's sensor model on `model`'s sensordata."""
    idx = spec.sensor_index(model)

    def read(sensordata, noise, bias, resolution):
        return spec.read_sensors(sensordata, idx, resolution, noise, bias)

    return read


class PlantModel:
    """Command history, latency, action noise and the sensor model of N envs."""

    def __init__(
        self,
        n: int,
        timestep: float,
        ctrl_low: np.ndarray,
        ctrl_high: np.ndarray,
        safe_ctrl: np.ndarray,
        read: Reader | None,
        base_resolution: np.ndarray,
        obs_noise_std: np.ndarray,
        action_noise_std: float = 0.0,
        max_latency_s: float = 0.0,
        command_interval: int = 1,
        seed: int = 0,
    ) -> None:
        self.n, self.timestep = n, float(timestep)
        self.ctrl_low, self.ctrl_high = np.asarray(ctrl_low), np.asarray(ctrl_high)
        self.safe_ctrl = np.clip(np.asarray(safe_ctrl, np.float64), self.ctrl_low, self.ctrl_high)
        self.read = read
        self.base_resolution = np.asarray(base_resolution, np.float64)
        self.obs_noise_std = np.asarray(obs_noise_std, np.float64)
        self.action_noise_std = float(action_noise_std)
        ns = self.base_resolution.size
        # Enough commands to reach back over the longest delay, commands `command_interval`
        # substeps apart at the most often.
        max_delay = self.delay_of(max_latency_s)
        self.hist_len = -(-max_delay // max(1, int(command_interval))) + 3
        self.hist = np.tile(self.safe_ctrl, (self.hist_len, n, 1))
        """(H, N, nu) the last commands (a ring, `cursor` the newest)."""
        self.issued = np.full(self.hist_len, _FAR_PAST, dtype=np.int64)
        """(H,) the clock at which each command in `hist` was issued."""
        self.cursor = 0
        self.clock = 0
        """Physics substeps simulated so far (by `controls`)."""
        self.delay = np.zeros(n, dtype=np.int64)
        """(N,) each env's latency in substeps."""
        self.bias = np.zeros((n, ns))
        self.res_scale = np.ones((n, 1))
        self._envs = np.arange(n)
        self._noise: np.ndarray | None = None
        """The sensor noise of the last `sense` (what `again` reads with)."""
        self.reseed(seed)

    def delay_of(self, latency_s: float) -> int:
        """A latency in whole physics substeps."""
        return int(np.rint(float(latency_s) / self.timestep))

    def reseed(self, seed: int) -> None:
        """New noise streams (action, sensor) derived from `seed`."""
        act, obs = np.random.SeedSequence(int(seed), spawn_key=(_STREAM_KEY,)).spawn(2)
        self.rng_action = np.random.default_rng(act)
        self.rng_sensor = np.random.default_rng(obs)

    # ---------------------------------------------------------------- per env

    def configure(self, ids, latency_s, bias=None, res_scale: float = 1.0) -> None:
        """An env's perturbation: latency (s), sensor bias (n_sensors,), resolution scale."""
        self.delay[ids] = self.delay_of(latency_s)
        self.bias[ids] = 0.0 if bias is None else bias
        self.res_scale[ids] = res_scale

    def hold(self, ids, ctrl: np.ndarray | None = None) -> None:
        """From now on (no latency), envs `ids` see `ctrl` (default: the safe control)."""
        self.hist[:, ids] = self.safe_ctrl if ctrl is None else ctrl

    # ---------------------------------------------------------------- stepping

    def command(self, cmd: np.ndarray) -> np.ndarray:
        """Issue (N, nu) commands now: noise added (one draw each), clipped; returns them."""
        c = np.asarray(cmd, dtype=np.float64)
        if self.action_noise_std > 0:
            c = c + self.rng_action.normal(0.0, self.action_noise_std, c.shape)
        c = np.clip(c, self.ctrl_low, self.ctrl_high)
        self.cursor = (self.cursor + 1) % self.hist_len
        self.hist[self.cursor] = c
        self.issued[self.cursor] = self.clock
        return c

    def controls(self, substeps: int, out: np.ndarray | None = None) -> np.ndarray:
        """(N, substeps, nu) the control of each env in the next `substeps` substeps."""
        n, H = self.n, self.hist_len
        if out is None:
            out = np.empty((n, substeps, self.hist.shape[2]))
        if not self.delay.any():
            out[:] = self.hist[self.cursor][:, None, :]
        else:
            # Per env and substep: the newest command issued at or before (t - delay).
            order = (self.cursor + 1 + np.arange(H)) % H  # oldest first
            when = self.issued[order]
            t = self.clock + np.arange(substeps)[None, :] - self.delay[:, None]
            pos = np.maximum(np.searchsorted(when, t, side="right") - 1, 0)
            out[:] = self.hist[order[pos], self._envs[:, None]]
        self.clock += substeps
        return out

    def sense(
        self, sensordata: np.ndarray, ids: np.ndarray | None = None, again: bool = False
    ) -> np.ndarray | None:
        """Readings of envs `ids` (default all) from their (len(ids), nsensordata) sensordata.
        `again`: the same instant read once more (the same envs, the previous call's noise,
        nothing drawn), after a change that only some sensors see (the control: a load)."""
        if self.read is None:
            return None
        ids = self._envs if ids is None else ids
        if not again:
            self._noise = None
            if self.obs_noise_std.any():
                self._noise = self.rng_sensor.normal(0.0, 1.0, (len(ids), self.obs_noise_std.size))
                self._noise *= self.obs_noise_std
        res = self.base_resolution * self.res_scale[ids]
        return self.read(sensordata, self._noise, self.bias[ids], res)

    # ---------------------------------------------------------------- resume

    _ARRAYS = ("hist", "issued", "delay", "bias", "res_scale")

    def snapshot(self) -> dict:
        d = {k: getattr(self, k).copy() for k in self._ARRAYS}
        d.update(cursor=self.cursor, clock=self.clock)
        d["rng"] = (self.rng_action.bit_generator.state, self.rng_sensor.bit_generator.state)
        return d

    def restore(self, d: dict) -> None:
        for k in self._ARRAYS:
            getattr(self, k)[...] = d[k]  # in place: views of these arrays stay valid
        self.cursor, self.clock = int(d["cursor"]), int(d["clock"])
        self.rng_action.bit_generator.state, self.rng_sensor.bit_generator.state = d["rng"]
