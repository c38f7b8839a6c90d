"""The host runtime: the fixed-rate loop, the safety layer, command sources (policy,
excitation) and the deploy entry logic. Imports firmware_bridge.wire and .logs, envs (the
robot spec), export.runtime (the ONNX policy) and ppo_robot.cli; never .sim, .analysis or
.tools.
"""
