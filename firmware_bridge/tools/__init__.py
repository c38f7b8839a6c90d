"""Tools: the fault proxy between host and controller. Imports firmware_bridge.wire and
ppo_robot.cli only.
"""
