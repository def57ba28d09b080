"""A federation's model in the formats scoring systems read: safetensors and ONNX.

- `model.safetensors`: the float32 weights under torch's names (`0.weight`,
  `0.bias`, ...), with string metadata (the model card's identifying fields);
  `torch.nn.Sequential` built as `node.learn.model.build` builds it loads them.
- `model.onnx`: the same network with a sigmoid on its output, exported by
  `torch.onnx`: input `features` (float32, rows x the schema's encoded width),
  output `score` (float32, rows x 1, the probability of the positive class).
  The encoding of a CSV row into `features` is the spec's `[data]` schema
  (numeric columns centered and scaled, categorical ones one-hot with an
  "other" slot), which the model card lists in full.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from node.core.codec import IntArray, from_fixed
from node.learn.model import ModelSpec, layout, load

__all__ = ["ONNX_INPUT", "ONNX_OUTPUT", "float_weights", "onnx_bytes", "write_safetensors"]

ONNX_INPUT, ONNX_OUTPUT = "features", "score"
OPSET = 17


def float_weights(spec: ModelSpec, params: Mapping[str, IntArray]) -> dict[str, npt.NDArray[np.float32]]:
    """The model's weights as float32 arrays, by torch name (what `load` puts in the module)."""
    return {k: np.ascontiguousarray(from_fixed(params[k]).astype(np.float32)) for k in layout(spec)}


def write_safetensors(path: Path, spec: ModelSpec, params: Mapping[str, IntArray], metadata: Mapping[str, str]) -> None:
    from safetensors.numpy import save_file

    save_file(float_weights(spec, params), str(path), metadata=dict(metadata))


def onnx_bytes(spec: ModelSpec, params: Mapping[str, IntArray]) -> bytes:
    """The model with a sigmoid on top, as an ONNX file (opset 17; any number of rows)."""
    module = torch.nn.Sequential(load(spec, params), torch.nn.Sigmoid()).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.9+ prefers its dynamo exporter, which needs onnxscript; this needs none
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (torch.zeros(1, spec.n_features),),
            buf,  # type: ignore[arg-type]  # a binary file object works (torch's stubs say path only)
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "rows"}, ONNX_OUTPUT: {0: "rows"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buf.getvalue()
