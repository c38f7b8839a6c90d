"""The host runtime: the fixed-rate loop and its transports (our framed protocol, a servo
bus), the safety layer, command sources (policy, excitation) and the deploy entry logic
(framed, and over a servo bus with its session: connect, enable, safe stop). Imports firmware_bridge.wire and .logs, envs (the
robot spec), export.runtime (the ONNX policy) and ppo_robot.cli; never .sim, .analysis or
.tools.
"""
