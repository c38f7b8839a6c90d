"""Export: checkpoint -> ONNX (`python -m export.onnx`) and the onnxruntime policy that the
bridge and replay load (`export.runtime.OnnxPolicy`)."""
