"""The controller stand-in: the Python controller (the firmware's twin), sim_robot on a
pseudo-terminal and simulated episodes written as deploy logs. Imports firmware_bridge.wire
and .logs, envs and ppo_robot (cli, checkpoint); never .host, .analysis or .tools.
"""
