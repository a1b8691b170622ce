"""Stages for tests/backends/test_coreml_nms.py that need coremltools, run in a worker of their
own (coremltools imports TensorFlow when it can, and the test process has torch).

`describe(package)` reads a CoreML package's model description as the pipeline validator
would check it: the models in order, the NMS stage's parameters and features, and whether
each stage's inputs are what the stage before produced.
"""

from __future__ import annotations

import sys


def _feature(f) -> dict:
    kind = f.type.WhichOneof("Type")
    out = {"name": f.name, "type": kind}
    if kind == "multiArrayType":
        array = f.type.multiArrayType
        out["dtype"] = int(array.dataType)
        out["shape"] = [int(d) for d in array.shape]
        out["ranges"] = [[int(r.lowerBound), int(r.upperBound)] for r in array.shapeRange.sizeRanges]
    return out


def describe(package: str) -> dict:
    sys.modules.setdefault("tensorflow", None)
    import coremltools as ct

    spec = ct.models.MLModel(package, skip_model_load=True).get_spec()
    result = {"type": spec.WhichOneof("Type"), "version": int(spec.specificationVersion),
              "inputs": [_feature(f) for f in spec.description.input],
              "outputs": [_feature(f) for f in spec.description.output],
              "metadata": dict(spec.description.metadata.userDefined)}
    if result["type"] != "pipeline":
        return result
    models = list(spec.pipeline.models)
    result["models"] = [m.WhichOneof("Type") for m in models]
    result["versions"] = [int(m.specificationVersion) for m in models]
    # Every stage's inputs must be, byte for byte, a pipeline input or an earlier stage's output.
    known = {f.name: f.SerializeToString() for f in spec.description.input}
    chained = True
    for model in models:
        chained &= all(known.get(f.name) == f.SerializeToString() for f in model.description.input)
        known.update({f.name: f.SerializeToString() for f in model.description.output})
    result["chained"] = chained and all(known.get(f.name) == f.SerializeToString() for f in spec.description.output)
    program, nms = models[0], models[-1]
    result["program_outputs"] = [_feature(f) for f in program.description.output]
    result["program_ops"] = sorted({op.type for block in program.mlProgram.functions["main"].block_specializations.values()
                                    for op in block.operations})
    params = nms.nonMaximumSuppression
    result["nms"] = {"method": params.WhichOneof("SuppressionMethod"), "per_class": params.pickTop.perClass,
                     "iou_threshold": params.iouThreshold, "confidence_threshold": params.confidenceThreshold,
                     "inputs": [params.confidenceInputFeatureName, params.coordinatesInputFeatureName],
                     "outputs": [params.confidenceOutputFeatureName, params.coordinatesOutputFeatureName],
                     "labels": list(params.stringClassLabels.vector),
                     "features_in": [_feature(f) for f in nms.description.input],
                     "features_out": [_feature(f) for f in nms.description.output]}
    return result
