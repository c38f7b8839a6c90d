"""Export: checkpoint -> ONNX (`python -m export.onnx`) and the onnxruntime policy that the
bridge and replay load (`export.runtime.OnnxPolicy`). Imports envs and ppo_robot's
algorithm modules (the actor, the checkpoint), never firmware_bridge.
"""
