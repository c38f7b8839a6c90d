"""Robots (one folder each in envs/robots/: layout, tasks, MJCF, README, robot.yaml), the
batched MuJoCo engine, domain randomization."""

from envs.gym_env import register as _register

_register()
