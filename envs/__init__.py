"""Robot specs and their MJCF assets, the batched MuJoCo engine, domain randomization."""

from envs.gym_env import register as _register

_register()
