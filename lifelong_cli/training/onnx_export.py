"""ONNX export: the preprocessing graph (built here from the fitted statistics) in front of the
network (exported by torch), merged into one model whose inputs are the raw feature columns.

Inputs: one ``[N, 1]`` tensor per feature — float for numeric and bool features, string for
categorical ones. Output ``scores``: class probabilities ``[N, C]`` or the prediction ``[N, 1]``."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, compose, helper, numpy_helper

from lifelong_cli.training.inference import onnx_inputs
from lifelong_cli.training.model import Scored
from lifelong_cli.training.preprocess import Preprocessor

__all__ = ["OPSET", "FEATURES", "OUTPUT", "preprocessing_graph", "export", "onnx_inputs"]

OPSET = 17
FEATURES = "features"
OUTPUT = "scores"


def preprocessing_graph(pre: Preprocessor) -> onnx.ModelProto:
    nodes, inits, inputs, parts = [], [], [], []
    if pre.numeric:
        for name in pre.numeric:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 1]))
        inits += [numpy_helper.from_array(np.asarray(pre.means, np.float32).reshape(1, -1), "pre_mean"),
                  numpy_helper.from_array(np.asarray(pre.stds, np.float32).reshape(1, -1), "pre_std")]
        nodes += [
            helper.make_node("Concat", list(pre.numeric), ["num_raw"], axis=1),
            helper.make_node("IsNaN", ["num_raw"], ["num_nan"]),
            helper.make_node("Where", ["num_nan", "pre_mean", "num_raw"], ["num_filled"]),
            helper.make_node("Sub", ["num_filled", "pre_mean"], ["num_centered"]),
            helper.make_node("Div", ["num_centered", "pre_std"], ["num_scaled"]),
        ]
        if pre.clip is not None:  # as Preprocessor.transform clips (versions fitted before clipping: none)
            inits += [numpy_helper.from_array(np.asarray(-pre.clip, np.float32), "pre_clip_lo"),
                      numpy_helper.from_array(np.asarray(pre.clip, np.float32), "pre_clip_hi")]
            nodes.append(helper.make_node("Clip", ["num_scaled", "pre_clip_lo", "pre_clip_hi"], ["num_clipped"]))
        parts.append("num_clipped" if pre.clip is not None else "num_scaled")
    for i, (name, cats) in enumerate(zip(pre.categorical, pre.categories, strict=True)):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, ["N", 1]))
        inits.append(numpy_helper.from_array(np.asarray([-1, len(cats)], np.int64), f"cat_shape_{i}"))
        nodes += [
            helper.make_node("OneHotEncoder", [name], [f"cat_oh3_{i}"], domain="ai.onnx.ml", cats_strings=cats, zeros=1),
            helper.make_node("Reshape", [f"cat_oh3_{i}", f"cat_shape_{i}"], [f"cat_oh_{i}"]),
        ]
        parts.append(f"cat_oh_{i}")
    nodes.append(helper.make_node("Concat", parts, [FEATURES], axis=1))
    graph = helper.make_graph(nodes, "llctl_preprocess", inputs,
                              [helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, ["N", pre.n_inputs])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)])


def export(net: torch.nn.Module, pre: Preprocessor) -> bytes:
    """The whole model as ONNX bytes (preprocessing + network + softmax)."""
    scored = Scored(net, pre.task).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(scored, (torch.zeros(1, pre.n_inputs),), buf, input_names=[FEATURES], output_names=[OUTPUT],
                          dynamic_axes={FEATURES: {0: "N"}, OUTPUT: {0: "N"}}, opset_version=OPSET, dynamo=False)
    net_model = onnx.load_from_string(buf.getvalue())
    net_model = onnx.version_converter.convert_version(net_model, OPSET) if net_model.opset_import[0].version != OPSET else net_model
    pre_model = preprocessing_graph(pre)
    pre_model.ir_version = net_model.ir_version
    merged = compose.merge_models(pre_model, net_model, io_map=[(FEATURES, FEATURES)])
    onnx.checker.check_model(merged)
    return merged.SerializeToString()

