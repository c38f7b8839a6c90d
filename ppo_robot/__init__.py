"""PPO for continuous actions, its training runner and entry points (train, evaluate).

Floors (tests/test_architecture.py checks them): `errors`, `paths` and `cli` (what every
entry point shares) import nothing of ours above them, so every floor may import them; the
algorithm modules (networks, normalizer, storage, ppo, config, checkpoint, runner) import
envs only, never firmware_bridge or export; the entry points `train` and `evaluate` may
import anything (evaluate's `log=` uses firmware_bridge.sim.episodes).
"""
