"""Firmware packaging logic without a build: C sources, the op table, bundles."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from deployer.firmware import bundle, kernels, sources

API = Path(__file__).parent / "tflm_api"


def _model(ident="m", ops=("CONV_2D", "ADD", "CONV_2D")) -> sources.ModelFile:
    return sources.ModelFile("m.tflite", ident, bytes(range(40)), list(ops),
                             [sources.TensorInfo("images", [1, 8, 8, 3], "int8", 0.5, -128)],
                             [sources.TensorInfo("out:0", [1, 4], "int8", 0.25, 3),
                              sources.TensorInfo("o2", [1, 2, 2, 4], "float32")], 1000, 1264, "the model")


def test_c_names_and_strings():
    assert sources.c_ident("yolo-v8n_int8") == "yolo_v8n_int8"
    assert sources.c_ident("8bit") == "m_8bit"
    assert sources.c_string('a "b" \\ ??= é') == '"a \\"b\\" \\\\ \\077\\077= \\303\\251"'


def test_sources_compile_with_odd_labels_and_mixed_ranks(tmp_path):
    files = sources.write(tmp_path, "m", [_model()], ['say "hi"', "back\\slash", "naïve"], "test")
    assert files == ["m_model.h", "m_model.cc", "m_op_resolver.h"]
    text = (tmp_path / "m_op_resolver.h").read_text()
    assert text.count("resolver.Add") == 2 and "m_op_count = 2;" in text   # CONV_2D once
    main = tmp_path / "main.cc"
    main.write_text('#include "m_model.h"\n#include "m_op_resolver.h"\n'
                    "static_assert(m_output_dims[1][3] == 4 && m_output_dims[0][2] == 0, \"dims\");\n"
                    "static_assert(m_arena_bytes == 1264 && m_input_zero_points[0] == -128, \"consts\");\n"
                    "int f() { m_op_resolver r; return m_register_ops(r) + m_label_count; }\n")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(main), str(tmp_path / "m_model.cc"),
                    "-I", str(tmp_path), "-I", str(API)], check=True, capture_output=True, cwd=tmp_path)


def test_every_op_of_the_table_has_a_tflm_method():
    """The table's methods are TFLM's own (the test API lists the real header's methods)."""
    declared = set((API / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text().split("TfLiteStatus ")[1:])
    names = {d.split("(")[0] for d in declared}
    assert set(kernels.ADD_METHODS.values()) <= names


def _pow_model(path, exponent):
    """x ** exponent: a constant initializer, or (None) an exponent computed from the input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    if exponent is None:
        nodes.append(helper.make_node("ReduceMax", ["x"], ["e"], keepdims=0, name="emax"))
    else:
        inits.append(numpy_helper.from_array(np.array(exponent, np.float32), "e"))
    nodes.append(helper.make_node("Pow", ["x", "e"], ["y"], name="the_pow"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return str(path)


@pytest.mark.parametrize("exponent, unsupported", [(2.0, False), (3.0, False), (0.5, True), (None, True)])
def test_pow_is_judged_by_its_exponent_as_onnx2tf_writes_it(tmp_path, exponent, unsupported):
    from deployer.backends.tflm import unsupported_ops

    got = unsupported_ops(_pow_model(tmp_path / "m.onnx", exponent), {"Pow": 1, "Relu": 1})
    assert bool(got) == unsupported
    if unsupported:
        assert got[0].startswith("Pow (as POW") and "the_pow" in got[0]


def test_bundle_readme_offers_tflm_only_with_a_tflm_model():
    split = {"target": "embedded", "backend": "tflite", "precision": "int8", "path": "embedded/m_int8.tflite",
             "decode": "embedded/m_int8_decode.tflite", "parity": {"runtime": "litert"}}
    ir = {"target": "embedded", "backend": "openvino", "precision": "int8", "path": "embedded/m_int8.xml",
          "parity": {"runtime": "openvino"}}
    text = bundle.readme("m", "embedded", [split, ir])
    assert "--tflm" not in text and "`openvino` for .xml" in text and "m_int8_decode.tflite" in text
    micro = {**split, "target": "mcu", "backend": "tflm", "memory": {
        "flash_bytes": 10, "arena_bytes": 20, "arena_min_bytes": 16, "arena_headroom": 0.25,
        "models": [{"symbol": "m_int8_model"}, {"symbol": "m_int8_decode_model"}]}}
    text = bundle.readme("m", "mcu", [micro])
    assert "--tflm" in text and "micro_interpreter.h" in text and "AllocateTensors() != kTfLiteOk" in text


def test_unsupported_names_op_and_first_layer():
    ops = [("CONV_2D", "a"), ("TOPK_V2", "head/topk"), ("TOPK_V2", "later"), ("SELECT", "w")]
    assert kernels.unsupported(ops) == [("TOPK_V2", "head/topk"), ("SELECT", "w")]
    assert kernels.onnx_unsupported({"Conv": 3, "TopK": 1, "Foo": 1}) == [
        "TopK (as TOPK_V2)", "Foo (form in TFLite not known: check the built model)"]


def _manifest(target="mcu"):
    return {"model": "m", "source": {"path": "/abs/where/m.py:build", "weights": "/abs/where/m.pt"},
            "onnx": {"opset": 18, "path": ".work/cache/lower/0123/model.onnx"}, "build_seconds": 12.5, "spec": "/abs/m.toml",
            "targets": {target: {"status": "built", "profile": "/abs/mcu.toml", "kept_previous_build": False}},
            "artifacts": [{"target": target, "backend": "tflm", "precision": "int8", "path": f"{target}/m.tflite",
                           "status": "built", "stages": [{"seconds": 1.0}], "parity": {"runtime": "tflm",
                                                                                       "seconds": 3.0}}]}


def test_bundle_is_reproducible_and_checksummed(tmp_path):
    for run in ("a", "b"):
        folder = tmp_path / run / "mcu"
        folder.mkdir(parents=True)
        (folder / "m.tflite").write_bytes(b"\x00" * 100)
        (folder / "deployer.json").write_text(json.dumps({"labels": ["x", "y"]}))
        manifest = _manifest()
        manifest["build_seconds"] = 1.0 if run == "a" else 99.0     # times differ between builds
        bundle.write(tmp_path / run, "mcu", manifest, "2.1")
    a, b = (tmp_path / r / "m-mcu-2.1.tar.gz" for r in ("a", "b"))
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    with tarfile.open(a) as tar:
        tar.extractall(tmp_path / "x", filter="data")
        assert tar.getnames()[0] == "m-mcu-2.1"
    root = tmp_path / "x" / "m-mcu-2.1"
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True).returncode == 0
    inner = json.loads((root / "manifest.json").read_text())
    assert inner["source"]["path"] == "m.py:build" and inner["source"]["weights"] == "m.pt"
    assert inner["onnx"] == {"opset": 18}      # the cached ONNX is not in the bundle
    assert "build_seconds" not in inner and "spec" not in inner
    assert "stages" not in inner["artifacts"][0] and "seconds" not in inner["artifacts"][0]["parity"]
    (root / "m.tflite").write_bytes(b"\x01" * 100)   # a damaged file is caught
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True).returncode == 1
    assert not list((tmp_path / "a").glob(".*.tmp"))


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 1e-9, 123456.789])
def test_float_constants_read_back(value):
    text = sources._float(value)
    assert text.endswith("f") and float(text[:-1]) == pytest.approx(value, rel=1e-8)
