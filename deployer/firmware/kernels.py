"""The builtin kernels of TensorFlow Lite Micro, as `tflite::MicroMutableOpResolver` adds them.

TFLM has no registry to ask at run time: an application registers each kernel it needs with
one `Add...()` call, and a model with an op that has no such call cannot run on a
microcontroller. This table is TFLM's `micro_mutable_op_resolver.h` (the tflite-micro commit
of the pinned `tflite-micro` wheel, 2026): TFLite builtin operator name -> the method adding
its kernel. Plain data, no framework: the parent reads it for `deployer inspect`.
"""

from __future__ import annotations

ADD_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "ELU": "AddElu",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D",
    "MIRROR_PAD": "AddMirrorPad", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub",
    "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
    # custom ops TFLM ships a kernel for (the flatbuffer names them by their custom code)
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
}

# What a missing op usually is, and what to do about it (the common cases in detectors).
ADVICE: dict[str, str] = {
    "NON_MAX_SUPPRESSION_V4": "NMS in the graph does not run on TFLM: build without nms = \"graph\"",
    "NON_MAX_SUPPRESSION_V5": "NMS in the graph does not run on TFLM: build without nms = \"graph\"",
    "TOPK_V2": "TFLM has no top-k: keep top-k in the application",
    "CUSTOM": "a custom op needs its own kernel registered with AddCustom()",
}


def unsupported(ops: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (op, layer) pairs whose op has no TFLM kernel, first use of each op."""
    seen: dict[str, str] = {}
    for op, layer in ops:
        if op not in ADD_METHODS and op not in seen:
            seen[op] = layer
    return list(seen.items())


def resolver_methods(ops) -> list[str]:
    """The Add methods registering exactly the kernels of `ops` (names), in op-name order."""
    return [ADD_METHODS[op] for op in sorted(set(ops))]


# The TFLite builtins onnx2tf renders each ONNX op as (the common detector ops); `deployer
# inspect` judges an ONNX model's TFLM support through this before anything is converted.
ONNX_AS_TFLITE: dict[str, tuple[str, ...]] = {
    "Conv": ("CONV_2D", "DEPTHWISE_CONV_2D"), "ConvTranspose": ("TRANSPOSE_CONV",), "Relu": ("RELU",),
    "Sigmoid": ("LOGISTIC",), "Tanh": ("TANH",), "LeakyRelu": ("LEAKY_RELU",), "PRelu": ("PRELU",),
    "HardSwish": ("HARD_SWISH",), "Clip": ("RELU6", "MINIMUM", "MAXIMUM"), "Elu": ("ELU",),
    "Add": ("ADD",), "Sub": ("SUB",), "Mul": ("MUL",), "Div": ("DIV", "MUL"), "Max": ("MAXIMUM",),
    "Min": ("MINIMUM",), "Abs": ("ABS",), "Neg": ("NEG",), "Exp": ("EXP",), "Log": ("LOG",), "Sqrt": ("SQRT",),
    "Pow": ("MUL",),   # constant exponent 2 or 3; any other is POW (backends/tflm.py checks)
    "Floor": ("FLOOR",), "Ceil": ("CEIL",), "Round": ("ROUND",), "Sin": ("SIN",),
    "Cos": ("COS",), "Equal": ("EQUAL",), "Greater": ("GREATER",), "Less": ("LESS",), "Not": ("LOGICAL_NOT",),
    "Concat": ("CONCATENATION",), "Reshape": ("RESHAPE",), "Flatten": ("RESHAPE",), "Squeeze": ("RESHAPE",),
    "Unsqueeze": ("RESHAPE",), "Transpose": ("TRANSPOSE",), "Slice": ("STRIDED_SLICE",),
    "Split": ("SPLIT", "SPLIT_V"), "Gather": ("GATHER",), "GatherND": ("GATHER_ND",), "Pad": ("PAD", "PADV2"),
    "MaxPool": ("MAX_POOL_2D",), "AveragePool": ("AVERAGE_POOL_2D",), "GlobalAveragePool": ("MEAN",),
    "GlobalMaxPool": ("REDUCE_MAX",), "ReduceMean": ("MEAN",), "ReduceMax": ("REDUCE_MAX",),
    "ReduceMin": ("REDUCE_MIN",), "ReduceSum": ("SUM",), "Softmax": ("SOFTMAX",), "LogSoftmax": ("LOG_SOFTMAX",),
    "Resize": ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"), "Upsample": ("RESIZE_NEAREST_NEIGHBOR",),
    "Gemm": ("FULLY_CONNECTED",), "MatMul": ("FULLY_CONNECTED", "BATCH_MATMUL"), "Cast": ("CAST",),
    "Shape": ("SHAPE",), "Expand": ("BROADCAST_TO",), "DepthToSpace": ("DEPTH_TO_SPACE",),
    "SpaceToDepth": ("SPACE_TO_DEPTH",), "BatchNormalization": ("MUL", "ADD"), "Identity": (), "Constant": (),
    "Dropout": (), "ArgMax": ("ARG_MAX",), "ArgMin": ("ARG_MIN",), "CumSum": ("CUMSUM",),
    # Tile of one axis is rewritten as Concat for onnx2tf; SELECT is rewritten as SELECT_V2 (micro.py)
    "Tile": ("CONCATENATION",), "Softplus": ("EXP", "ADD", "LOG"), "Where": ("SELECT_V2",),
    "LayerNormalization": ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "MUL", "ADD"),
    "TopK": ("TOPK_V2",), "NonMaxSuppression": ("NON_MAX_SUPPRESSION_V5",),
    "Erf": ("ERF",), "Gelu": ("GELU",), "Mish": ("SELECT",), "ScatterND": ("SCATTER_ND",),
    "NonZero": ("WHERE",), "RoiAlign": ("CROP_AND_RESIZE",), "GridSample": ("GATHER_ND", "SELECT"),
}


def onnx_unsupported(ops) -> list[str]:
    """ONNX ops whose TFLite form has no TFLM kernel, or whose form is not known here ('?')."""
    out = []
    for op in ops:
        rendered = ONNX_AS_TFLITE.get(op)
        if rendered is None:
            out.append(f"{op} (form in TFLite not known: check the built model)")
        elif any(t not in ADD_METHODS for t in rendered):
            out.append(f"{op} (as {', '.join(t for t in rendered if t not in ADD_METHODS)})")
    return out
