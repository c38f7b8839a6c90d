"""The controller stand-in: the Python controller (the firmware's twin), sim_robot on a
pseudo-terminal, simulated episodes written as deploy logs, and emulated Feetech STS servos
on a pseudo-terminal (`feetech_servos`). Imports firmware_bridge.wire and .logs, envs and
ppo_robot (cli, checkpoint); never .host, .analysis or .tools.
"""
