"""Build the deployed actor as an ONNX graph, straight from the checkpoint's weights.

obs -> (obs - mean) / std, clipped -> MLP -> mean action -> clip [-1, 1]
    -> base + gain * a -> clip [command_low, command_high] -> action (command units)

with base = offset and gain = scale for an absolute map; an incremental map
(`envs.action_map`) takes base from the observation's `<actuator>_last` entries
(obs[last] * scale + offset, the last command) and gain = step.

With `precision="float64"` (the default) the graph computes in float64 inside (input and
output stay float32): the trained weights are evaluated exactly, so the only difference
from the torch actor evaluated in float64 is the final rounding to float32, far below the
1e-5 parity tolerance even for commands of +-10 V. `precision="float32"` computes as torch
trained it, which is faster for large networks; its parity is then checked against the
float32 torch actor.

Written with onnx.helper rather than a tracing exporter, so the graph is exactly this and
does not change with torch's exporter; `export.onnx` checks it against the torch actor
on 10,000+ observations before it is written.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from envs.action_map import ActionMap
from ppo_robot.networks import Actor

OPSET = 17
INPUT = "obs"
OUTPUT = "action"


def build_graph(
    actor: Actor,
    amap: ActionMap,
    metadata: dict[str, str],
    precision: str = "float64",
) -> onnx.ModelProto:
    """The actor as one ONNX model: normalizer, MLP, command mapping and clip, with
    `metadata` as its metadata_props (see the module docstring for the graph)."""
    norm = actor.normalizer
    mean = norm.mean.double().numpy()
    std = np.sqrt(norm.var.double().numpy() + norm.eps)
    obs_dim = mean.size
    act_dim = actor.log_std.numel()
    if precision not in ("float64", "float32"):
        raise ValueError(f"precision must be float64 or float32, got {precision!r}")
    np_dtype = np.float64 if precision == "float64" else np.float32
    onnx_dtype = TensorProto.DOUBLE if precision == "float64" else TensorProto.FLOAT
    inits = _Initializers(np_dtype)
    nodes = _normalizer_nodes(inits, mean, std, norm.clip, onnx_dtype)
    mlp, x = _mlp_nodes(inits, list(actor.net), "x0")
    nodes += mlp
    nodes += _command_nodes(inits, x, amap)
    graph = helper.make_graph(
        nodes,
        "ppo_robot_actor",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", obs_dim])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", act_dim])],
        initializer=inits.tensors,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="ppo-robot",
        ir_version=8,
    )
    for k, v in metadata.items():
        model.metadata_props.add(key=k, value=v)
    return model


class _Initializers:
    """The graph's constants, in the order they are added, all in the graph's dtype."""

    def __init__(self, np_dtype) -> None:
        self.np_dtype = np_dtype
        self.tensors: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        """Add `value` as the initializer `name`; its name, for a node's input."""
        self.tensors.append(numpy_helper.from_array(np.asarray(value, dtype=self.np_dtype), name))
        return name


def _normalizer_nodes(
    inits: _Initializers, mean: np.ndarray, std: np.ndarray, clip: float, onnx_dtype: int
) -> list[onnx.NodeProto]:
    """obs (float32) -> the graph's dtype -> (obs - mean) / std, clipped to +-clip: `x0`."""
    inits.const("norm_mean", mean)
    inits.const("norm_std", std)
    inits.const("obs_clip_lo", -clip)
    inits.const("obs_clip_hi", clip)
    return [
        helper.make_node("Cast", [INPUT], ["obs_in"], to=onnx_dtype),
        helper.make_node("Sub", ["obs_in", "norm_mean"], ["centered"]),
        helper.make_node("Div", ["centered", "norm_std"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "obs_clip_lo", "obs_clip_hi"], ["x0"]),
    ]


def _mlp_nodes(inits: _Initializers, modules: list, x: str) -> tuple[list[onnx.NodeProto], str]:
    """The actor's MLP (Linear and its activations) from input `x`: (nodes, output name)."""
    nodes: list[onnx.NodeProto] = []
    layer = 0
    for i, m in enumerate(modules):
        name = type(m).__name__
        out = f"h{i}"
        if name == "Linear":
            w = inits.const(f"W{layer}", m.weight.detach().double().numpy().T)
            b = inits.const(f"b{layer}", m.bias.detach().double().numpy())
            nodes.append(helper.make_node("Gemm", [x, w, b], [out]))
            layer += 1
        elif name == "Tanh":
            nodes.append(helper.make_node("Tanh", [x], [out]))
        elif name == "ReLU":
            nodes.append(helper.make_node("Relu", [x], [out]))
        elif name == "ELU":
            nodes.append(helper.make_node("Elu", [x], [out], alpha=float(m.alpha)))
        elif name == "SiLU":
            nodes += [
                helper.make_node("Sigmoid", [x], [out + "_s"]),
                helper.make_node("Mul", [x, out + "_s"], [out]),
            ]
        else:  # pragma: no cover - networks.mlp builds only the above
            raise ValueError(f"cannot export layer {name}")
        x = out
    return nodes, x


def _command_nodes(inits: _Initializers, x: str, amap: ActionMap) -> list[onnx.NodeProto]:
    """Mean action `x` -> clip [-1, 1] -> base + gain * a -> clip [low, high] -> the
    float32 output (base: the offset, or for an incremental map the last command read
    from the observation)."""
    inits.const("one_lo", -1.0)
    inits.const("one_hi", 1.0)
    inits.const("act_scale", amap.gain)
    inits.const("act_offset", amap.offset)
    inits.const("cmd_low", amap.low)
    inits.const("cmd_high", amap.high)
    nodes = [
        helper.make_node("Clip", [x, "one_lo", "one_hi"], ["mean_clipped"]),
        helper.make_node("Mul", ["mean_clipped", "act_scale"], ["cmd_scaled"]),
    ]
    base = "act_offset"
    if amap.any_incremental:
        inc = amap.incremental
        at = np.where(inc, amap.last_obs, 0).astype(np.int64)
        inits.tensors.append(numpy_helper.from_array(at, "last_at"))
        inits.const("last_scale", np.where(inc, amap.scale, 0.0))
        nodes += [
            helper.make_node("Gather", ["obs_in", "last_at"], ["last_norm"], axis=1),
            helper.make_node("Mul", ["last_norm", "last_scale"], ["last_span"]),
            helper.make_node("Add", ["last_span", "act_offset"], ["cmd_base"]),
        ]
        base = "cmd_base"
    return nodes + [
        helper.make_node("Add", ["cmd_scaled", base], ["cmd_raw"]),
        # Clip with per-element bounds: Max(Min(x, high), low).
        helper.make_node("Min", ["cmd_raw", "cmd_high"], ["cmd_upper"]),
        helper.make_node("Max", ["cmd_upper", "cmd_low"], ["action_out"]),
        helper.make_node("Cast", ["action_out"], [OUTPUT], to=TensorProto.FLOAT),
    ]
