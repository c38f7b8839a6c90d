"""PPO for continuous actions, its training runner and entry points (train, evaluate)."""
