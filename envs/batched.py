"""The batched MuJoCo engine: N envs stepped together in MuJoCo's own C threads.

Each env has its own `MjModel` copy (so per-env domain randomization costs nothing extra
at step time); physics for the whole batch advances in one rollout call per control step:
`mujoco.batch.Batch.rollout` (MuJoCo's threaded batch, run on our per-env models), which
works as `mujoco.rollout` does but keeps each env's whole integration state between calls,
the constraint solver's warmstart included, so that an env's trajectory is bit-identical to
stepping one MjData (as Gymnasium does). Observations, rewards, terminations and
truncations are computed vectorized over the batch; Python does per-batch work, never
per-env or per-substep work, except at resets (one `mj_forward` per reset env, to read its
first sensors, and one more with its actuators held where those readings put them).

Exposes Gymnasium's `VectorEnv` interface with same-step autoreset: when an episode ends,
the returned observation is the first of the next episode and `info["final_obs"]` holds the
last one (for bootstrapping truncated episodes), with `terminated` and `truncated` apart.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from mujoco.batch import Batch

from envs.adr_sampler import AdrSampler
from envs.plant import PlantModel, ctrl_bounds
from envs.randomization import Binder, Randomization
from envs.task import StepView, Task

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
_CTRL = mujoco.mjtState.mjSTATE_CTRL
_XFRC = mujoco.mjtState.mjSTATE_XFRC_APPLIED
_ROW = mujoco.mjtState.mjSTATE_INTEGRATION


class BatchedEnv(VectorEnv):
    """`num_envs` copies of a task, one MjModel each, stepped by one batched rollout a step."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: Task,
        num_envs: int,
        seed: int = 0,
        nthread: int = 2,
        randomization: Randomization | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.task = task
        self.num_envs = n = num_envs
        self.nominal = task.load_model()
        task.bind(self.nominal)
        self.models = [_copy_model(self.nominal) for _ in range(n)]
        self.nthread = max(1, int(nthread))
        self._scratch = mujoco.MjData(self.nominal)
        # The batch's rows are each env's whole integration state (mjSTATE_INTEGRATION): the
        # physics state of `self.state` plus what mujoco.rollout would drop between calls,
        # above all the constraint solver's warmstart (qacc_warmstart). Without it every
        # control step would start the solver cold and drift from a single MjData's run.
        self._batch: Batch | None = Batch(self.nominal, n, nthread=self.nthread)
        self._batch.set_models(self.models)
        self.substeps = task.n_substeps(self.nominal)
        self.dt = self.substeps * self.nominal.opt.timestep
        self.rand = randomization or Randomization()
        self.binder = (
            Binder(self.rand, self.nominal, task.sensor_names) if not self.rand.is_empty else None
        )
        self.adr = AdrSampler(self.rand.adaptive, n) if self.rand.adaptive else None
        """Automatic domain randomization's ranges and probes (`envs.adr_sampler`), or None."""
        if self.adr is not None and not task.has_success:
            raise ValueError("adaptive randomization needs a task with a success test")
        self._init_layout()
        self._init_buffers()
        self._init_plant(seed)
        self._init_spaces()
        self._arange = np.arange(n)
        self._rng = np.random.default_rng(seed)

    def _init_layout(self) -> None:
        """Sizes and state columns of the nominal model."""
        m = self.nominal
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        self.nstate = mujoco.mj_stateSize(m, _FULL)
        self._row_full = _columns(m, _FULL, _ROW)
        ws = _columns(m, mujoco.mjtState.mjSTATE_WARMSTART, _ROW)
        self.warmstart = self._batch.state[:, ws]
        """(N, nv) each env's qacc_warmstart (a view into the batch's state rows)."""
        self._qpos_at = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME)
        self._qvel_at = self._qpos_at + self.nq
        self.pushes = self.rand.push_prob > 0
        self.control_spec = _CTRL | _XFRC if self.pushes else _CTRL
        self.ncontrol = mujoco.mj_stateSize(m, self.control_spec)

    def _init_buffers(self) -> None:
        """The rollout's records and the per-env arrays, allocated once."""
        m, n, S, task = self.nominal, self.num_envs, self.substeps, self.task
        self.state = np.zeros((n, self.nstate))
        self._out_state = np.zeros((n, S, self.nstate))
        self._out_sens = np.zeros((n, S, m.nsensordata))
        self._records: dict = {_FULL: self._out_state}
        if m.nsensordata:
            self._records["sensordata"] = self._out_sens
        # MjData fields the task reads after a step, recorded after each physics step.
        probe = mujoco.MjData(m)
        like = {f: getattr(probe, f) for f in task.data_fields}
        self.fields = {f: np.zeros((n, *a.shape), a.dtype) for f, a in like.items()}
        """Task's `data_fields` after the last physics step, (N, ...) each."""
        for f, a in like.items():
            self._records[f] = np.zeros((n, S, *a.shape), a.dtype)
        self._control = np.zeros((n, S, self.ncontrol))
        self._qpos_prev = np.zeros((n, self.nq))
        self.sensordata = np.zeros((n, m.nsensordata))
        self.steps = np.zeros(n, dtype=np.int64)
        self.returns = np.zeros(n)
        ns = len(task.sensor_names)
        self.readings = np.zeros((n, ns))
        """(N, n_sensors) the readings (noise, bias, quantization) that the last `reset` or
        `step` observed, before any autoreset; robots only."""
        self._trace = np.zeros((n, task.max_episode_steps, ns)) if task.has_success else None
        self.obs = np.zeros((n, task.obs_dim))
        self.goal = np.zeros((n, task.goal_dim))
        """(N, goal_dim) each env's episode goal (`Task.sample_goal`)."""
        self.last_ctrl = np.zeros((n, m.nu))
        """(N, nu) the control of the previous step: the observation's 'previous command'."""

    def _init_plant(self, seed: int) -> None:
        """Latency, action noise and the sensor model (`envs.plant`), per env."""
        task, m = self.task, self.nominal
        ns = len(task.sensor_names)
        self.ctrl_low, self.ctrl_high = ctrl_bounds(m)
        mid = 0.5 * (self.ctrl_low + self.ctrl_high)[None]  # the "previous" of an incremental map
        safe = np.clip(
            task.ctrl(np.zeros((1, task.act_dim)), mid)[0], self.ctrl_low, self.ctrl_high
        )
        self.plant = PlantModel(
            self.num_envs,
            m.opt.timestep,
            self.ctrl_low,
            self.ctrl_high,
            safe,
            read=task.sensors if task.sensor_names else None,
            base_resolution=getattr(getattr(task, "spec", None), "resolution", np.zeros(ns)),
            obs_noise_std=self.binder.obs_noise_std if self.binder else np.zeros(ns),
            action_noise_std=self.rand.action_noise_std,
            max_latency_s=self._max_latency_s(),
            command_interval=self.substeps,
            seed=seed,
        )
        self.sensor_bias = self.plant.bias
        """(N, n_sensors) each env's sensor bias (the plant's array)."""

    def _max_latency_s(self) -> float:
        """The most latency an episode may draw (an adaptive range's hard bound included)."""
        lat = self.rand.latency_s.bounds[1] if self.rand.latency_s else 0.0
        adr = self.rand.adaptive
        hard = [p.upper for p in adr.params if p.name == "latency_s"] if adr else []
        return max([lat, *hard])

    def _init_spaces(self) -> None:
        task, n = self.task, self.num_envs
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (task.obs_dim,), np.float64)
        self.single_action_space = spaces.Box(
            task.action_low.astype(np.float32), task.action_high.astype(np.float32)
        )
        self.observation_space = spaces.Box(-np.inf, np.inf, (n, task.obs_dim), np.float64)
        self.action_space = spaces.Box(
            np.tile(self.single_action_space.low, (n, 1)),
            np.tile(self.single_action_space.high, (n, 1)),
        )

    # ---------------------------------------------------------------- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.plant.reseed(seed)
        sensors = self._reset_envs(self._arange)
        if sensors is not None:
            self.readings[:] = sensors
        return self.obs.copy(), {}

    def step(self, actions: np.ndarray):
        task = self.task
        action = np.clip(np.asarray(actions, dtype=np.float64), task.action_low, task.action_high)
        ctrl = task.ctrl(action, self.last_ctrl)
        self.plant.command(ctrl)
        self._write_controls()

        self._qpos_prev[:] = self.state[:, self._qpos_at : self._qvel_at]
        self._rollout()
        self.state[:] = self._out_state[:, -1]
        self.sensordata[:] = self._out_sens[:, -1]
        self.steps += 1

        sensors = self._read_sensors(self._arange)
        if sensors is not None:
            self.readings[:] = sensors
        view = self._view(sensors, action, ctrl)
        reward = task.reward(view)  # charges the change from the previous command ...
        terminated = task.terminated(view)
        self.last_ctrl[:] = ctrl  # ... the next observation's previous command is this one
        obs = task.observe(view)
        truncated = (self.steps >= task.max_episode_steps) & ~terminated
        self.returns += reward
        if self._trace is not None:
            idx = np.minimum(self.steps - 1, task.max_episode_steps - 1)
            self._trace[self._arange, idx] = sensors

        done = terminated | truncated
        info: dict = {}
        self.obs[:] = obs
        if done.any():
            ids = np.flatnonzero(done)
            info["final_obs"] = obs.copy()
            info["_final_obs"] = done
            ep = {"r": self.returns[ids].copy(), "l": self.steps[ids].copy(), "ids": ids}
            if self._trace is not None:
                ok = task.success(self._trace[ids], self.goal[ids]) & truncated[ids]
                ep["success"] = ok
                if self.adr is not None:
                    self.adr.finished(ids, ok)
            info["episode"] = ep
            self._reset_envs(ids)
        return self.obs.copy(), reward, terminated, truncated, info

    def close(self, **kwargs) -> None:
        self._batch = None  # its threads stop when it is freed

    # ---------------------------------------------------------------- resume

    _SNAPSHOT = (
        "state",
        "_qpos_prev",
        "sensordata",
        "steps",
        "returns",
        "readings",
        "obs",
        "goal",
        "last_ctrl",
    )

    def snapshot(self) -> dict:
        """Everything a later `restore` needs to continue bit for bit: physics rows
        (warmstart included), episode counters, the plant (latency history, per-env signals,
        its noise streams), randomized model values, the generator."""
        d = {k: getattr(self, k).copy() for k in self._SNAPSHOT}
        d["batch_state"] = self._batch.state.copy()
        d["fields"] = {f: b.copy() for f, b in self.fields.items()}
        d["trace"] = None if self._trace is None else self._trace.copy()
        d["plant"] = self.plant.snapshot()
        d["rng"] = self._rng.bit_generator.state
        d["adr"] = None if self.adr is None else self.adr.snapshot()
        if self.binder is not None:
            d["models"] = [
                [np.array(getattr(m, b.attr)[b.rows]) for b in self.binder.bound]
                + [np.array(m.opt.gravity)]
                for m in self.models
            ]
        return d

    def restore(self, d: dict) -> None:
        if d["state"].shape != self.state.shape:
            raise ValueError("snapshot is of another env batch (num_envs or model differ)")
        for k in self._SNAPSHOT:
            getattr(self, k)[...] = d[k]
        self._batch.state[...] = d["batch_state"]
        for f, b in self.fields.items():
            b[...] = d["fields"][f]
        if self._trace is not None and d["trace"] is not None:
            self._trace[...] = d["trace"]
        self.plant.restore(d["plant"])
        self._rng.bit_generator.state = d["rng"]
        if self.adr is not None and d.get("adr") is not None:
            self.adr.restore(d["adr"])
        if self.binder is not None and "models" in d:
            for m, vals in zip(self.models, d["models"], strict=True):
                for b, v in zip(self.binder.bound, vals[:-1], strict=True):
                    getattr(m, b.attr)[b.rows] = v  # whole rows, as snapshot() took them
                m.opt.gravity[:] = vals[-1]
            self._batch.set_models(self.models)

    # ---------------------------------------------------------------- internals

    def _rollout(self) -> None:
        """Advance every env one control step from `self.state`; outputs in the records."""
        b = self._batch
        if b is None:
            raise RuntimeError("step() after close()")
        # `self.state` is the step's initial physics state, as it was for mujoco.rollout
        # (a no-op copy unless someone set it); warmstart, ctrl and the rest stay in the row.
        b.state[:, self._row_full] = self.state
        b.rollout(
            self.substeps,
            self._control,
            control_spec=self.control_spec,
            record=tuple(self._records),
            out=self._records,
        )
        for f, buf in self.fields.items():
            buf[:] = self._records[f][:, -1]

    def _write_controls(self) -> None:
        """Fill the (N, substeps, ncontrol) control array: the plant's controls, pushes."""
        nu = self.nu
        self.plant.controls(self.substeps, out=self._control[:, :, :nu])
        if self.pushes:
            xfrc = self._control[:, :, nu:].reshape(self.num_envs, self.substeps, -1, 6)
            xfrc[:] = 0.0
            hit = np.flatnonzero(self._rng.random(self.num_envs) < self.rand.push_prob)
            if hit.size:
                ang = self._rng.uniform(0, 2 * np.pi, hit.size)
                force = self.rand.push_force * np.stack([np.cos(ang), np.sin(ang)], axis=1)
                b = self.binder.push_body  # type: ignore[union-attr]
                xfrc[hit, :, b, 0:2] = force[:, None, :]

    def _read_sensors(self, ids: np.ndarray) -> np.ndarray | None:
        return self.plant.sense(self.sensordata[ids], ids)

    def _view(self, sensors, action, ctrl) -> StepView:
        return StepView(
            qpos=self.state[:, self._qpos_at : self._qvel_at],
            qvel=self.state[:, self._qvel_at : self._qvel_at + self.nv],
            qpos_prev=self._qpos_prev,
            sensordata=self.sensordata,
            sensors=sensors,
            action=action,
            ctrl=ctrl,
            goal=self.goal,
            last_ctrl=self.last_ctrl,
            fields=self.fields,
        )

    def _reset_envs(self, ids: np.ndarray) -> np.ndarray | None:
        """New episode for the envs in `ids`: resample their models, initial state, signals.
        Returns their first readings."""
        task, rng = self.task, self._rng
        if self.binder is not None:
            for i in ids:
                p = self.binder.sample(rng, self.adr.dists(rng, i) if self.adr else None)
                self.binder.apply(self.models[i], p)
                self.plant.configure(i, p.latency_s, p.sensor_bias, p.resolution_scale)
        qpos, qvel = task.initial_state(self.nominal, rng, ids.size)
        if task.goal_dim:
            self.goal[ids] = task.sample_goal(self.nominal, rng, ids.size)
        d = self._scratch
        for row, i in enumerate(ids):
            mujoco.mj_resetData(self.models[i], d)
            d.qpos[:] = qpos[row]
            d.qvel[:] = qvel[row]
            mujoco.mj_forward(self.models[i], d)
            mujoco.mj_getState(self.models[i], d, self.state[i], _FULL)
            # The whole row, so the episode starts with the warmstart of this mj_forward (as
            # a Gymnasium reset does) and with cleared controls and applied forces.
            mujoco.mj_getState(self.models[i], d, self._batch.state[i], _ROW)
            self.sensordata[i] = d.sensordata
            for f, buf in self.fields.items():
                buf[i] = getattr(d, f)
        if self.binder is not None:
            self._batch.set_models(self.models)  # the batch reads edited models anew
        self.steps[ids] = 0
        self.returns[ids] = 0.0
        self._qpos_prev[ids] = qpos
        sensors = self._read_sensors(ids)
        start = task.start_ctrl(sensors, ids.size)
        if start is not None:
            sensors = self._read_held(ids, start)
        self.plant.hold(ids, start)
        self.last_ctrl[ids] = self.plant.safe_ctrl if start is None else start
        view = StepView(
            qpos=self.state[ids, self._qpos_at : self._qvel_at],
            qvel=self.state[ids, self._qvel_at : self._qvel_at + self.nv],
            qpos_prev=self._qpos_prev[ids],
            sensordata=self.sensordata[ids],
            sensors=sensors,
            action=np.zeros((ids.size, task.act_dim)),
            ctrl=np.zeros((ids.size, self.nu)),
            goal=self.goal[ids],
            last_ctrl=self.last_ctrl[ids],
            fields={f: buf[ids] for f, buf in self.fields.items()},
        )
        self.obs[ids] = task.observe(view)
        return sensors

    def _read_held(self, ids: np.ndarray, start: np.ndarray) -> np.ndarray | None:
        """The first readings once more with the actuators held at `start` (what the
        episode starts held at, from those readings): the sensors that see the control (a
        position servo's load) read as for a held actuator, the others unchanged (the same
        noise)."""
        d = self._scratch
        for row, i in enumerate(ids):
            mujoco.mj_resetData(self.models[i], d)
            mujoco.mj_setState(self.models[i], d, self.state[i], _FULL)
            d.ctrl[:] = np.clip(start[row], self.ctrl_low, self.ctrl_high)
            mujoco.mj_forward(self.models[i], d)
            self.sensordata[i] = d.sensordata
            for f, buf in self.fields.items():
                buf[i] = getattr(d, f)
        return self.plant.sense(self.sensordata[ids], ids, again=True)


def _copy_model(m: mujoco.MjModel) -> mujoco.MjModel:
    import copy

    return copy.copy(m)


def _columns(m: mujoco.MjModel, part: int, whole: int) -> slice | np.ndarray:
    """Columns of state vector `whole` that hold the components of `part` (a subset of it).

    Components are laid out in mjtState bit order (mj_getState); a slice where contiguous.
    """
    cols, at = [], 0
    for k in range(int(mujoco.mjtState.mjNSTATE)):
        bit = 1 << k
        if not whole & bit:
            continue
        size = mujoco.mj_stateSize(m, bit)
        if part & bit:
            cols.extend(range(at, at + size))
        at += size
    idx = np.array(cols, dtype=np.int64)
    if idx.size == 0 or np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        start = int(idx[0]) if idx.size else 0
        return slice(start, start + idx.size)
    return idx
