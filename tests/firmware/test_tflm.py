"""The MCU target end to end on the bundled example: the full-integer model and its decoding
run in the real TensorFlow Lite Micro interpreter, the generated C++ compiles, the op resolver
registers exactly the flatbuffers' kernels, the arena is the measured minimum, the bundle
verifies and is reproducible, and the Python sample gives the figures of the manifest."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.heavy
API = Path(__file__).parent / "tflm_api"
SPEC = ROOT / "examples" / "shapes" / "shapes.toml"


def _constants(header: Path) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"constexpr unsigned int (\w+) = (\d+);", header.read_text())}


@pytest.fixture(scope="module")
def mcu(tmp_path_factory):
    dist = tmp_path_factory.mktemp("mcu") / "dist"
    result = run_cli("build", str(SPEC), "--target", "mcu", "--out", str(dist))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((dist / "shapes" / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["target"] == "mcu")
    pytest.mcu_stdout = result.stdout
    return dist, manifest, entry


def test_parity_measured_in_tflm_itself(mcu):
    _, _, entry = mcu
    runs = {r["runtime"]: r for r in entry["parity"]["runs"]}
    assert set(runs) == {"tflm", "litert"}
    tflm = runs["tflm"]
    assert tflm["verdict"] == "pass", tflm
    assert tflm["detection"]["agreement_map50"] >= 0.90
    assert tflm["settings"]["arena"] == "measured minimum"
    assert entry["quantization"]["io"] == "int8" and entry["decode"].endswith("_decode.tflite")


def test_memory_report_in_manifest_and_table(mcu):
    dist, _, entry = mcu
    memory = entry["memory"]
    models = memory["models"]
    assert [m["file"] for m in models] == ["shapes_int8.tflite", "shapes_int8_decode.tflite"]
    for m in models:
        assert m["flash_bytes"] == (dist / "shapes" / "mcu" / m["file"]).stat().st_size
        assert m["arena_min_bytes"] < m["arena_bytes"] and m["arena_bytes"] % 16 == 0
    assert memory["flash_bytes"] == sum(m["flash_bytes"] for m in models)
    assert memory["arena_bytes"] == sum(m["arena_bytes"] for m in models)
    table = pytest.mcu_stdout   # the build's parity table
    assert "RAM" in table and f"{memory['arena_bytes'] / 1e3:.0f} kB" in table


def test_op_resolver_registers_exactly_the_flatbuffers_kernels(mcu):
    from deployer.firmware import micro
    from deployer.firmware.kernels import ADD_METHODS

    dist, _, entry = mcu
    folder = dist / "shapes" / "mcu"
    ops = set()
    for m in entry["memory"]["models"]:
        ops |= {op for op, _ in micro.graph((folder / m["file"]).read_bytes()).ops}
    text = (folder / "shapes_int8_op_resolver.h").read_text()
    registered = re.findall(r"resolver\.(Add\w+)\(\)", text)
    assert sorted(registered) == sorted(ADD_METHODS[op] for op in ops)
    assert len(registered) == len(set(registered))
    assert f"shapes_int8_op_count = {len(ops)};" in text


def test_generated_sources_compile_and_hold_the_model(mcu, tmp_path):
    dist, _, entry = mcu
    folder = dist / "shapes" / "mcu"
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdio>\n#include "shapes_int8_model.h"\n#include "shapes_int8_decode_model.h"\n'
        '#include "shapes_int8_op_resolver.h"\n'
        "int register_all() { shapes_int8_op_resolver r; return shapes_int8_register_ops(r) == kTfLiteOk; }\n")
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(main), "-I", str(folder), "-I", str(API),
                    "-o", str(tmp_path / "main.o")], check=True, capture_output=True)
    # The arrays are the flatbuffers byte for byte, aligned, with their lengths and labels.
    dump = tmp_path / "dump.cc"
    dump.write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "shapes_int8_model.h"\n#include "shapes_int8_decode_model.h"\n'
        "int main(int argc, char** argv) {\n"
        "  bool decode = argc > 1;\n"
        "  const unsigned char* p = decode ? shapes_int8_decode_model : shapes_int8_model;\n"
        "  unsigned int n = decode ? shapes_int8_decode_model_len : shapes_int8_model_len;\n"
        "  if (reinterpret_cast<std::uintptr_t>(p) % 16) return 3;\n"
        "  if (!decode) std::fprintf(stderr, \"%s %d\", shapes_int8_labels[3], shapes_int8_input_zero_points[0]);\n"
        "  std::fwrite(p, 1, n, stdout);\n  return 0;\n}\n")
    exe = tmp_path / "dump"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", str(dump), str(folder / "shapes_int8_model.cc"),
                    str(folder / "shapes_int8_decode_model.cc"), "-I", str(folder), "-o", str(exe)],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe)], capture_output=True, check=True)
    assert out.stdout == (folder / "shapes_int8.tflite").read_bytes()
    assert out.stderr.decode().startswith("star ")
    out = subprocess.run([str(exe), "decode"], capture_output=True, check=True)
    assert out.stdout == (folder / "shapes_int8_decode.tflite").read_bytes()


def test_a_typo_in_generated_code_would_not_compile(mcu, tmp_path):
    """The compile check can fail: the same resolver with a method TFLM lacks does not compile."""
    dist, _, _ = mcu
    folder = dist / "shapes" / "mcu"
    bad = tmp_path / "bad_op_resolver.h"
    bad.write_text((folder / "shapes_int8_op_resolver.h").read_text().replace("AddConv2D", "AddConv2d"))
    main = tmp_path / "main.cc"
    main.write_text('#include "bad_op_resolver.h"\nint f() { shapes_int8_op_resolver r; '
                    "return shapes_int8_register_ops(r); }\n")
    result = subprocess.run(["g++", "-std=c++17", "-c", str(main), "-I", str(tmp_path), "-I", str(API),
                             "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert result.returncode != 0 and "AddConv2d" in result.stderr


def test_arena_in_header_is_the_measured_minimum(mcu):
    from deployer.firmware import micro

    dist, _, entry = mcu
    folder = dist / "shapes" / "mcu"
    for m in entry["memory"]["models"]:
        ident = m["symbol"].removesuffix("_model")
        consts = _constants(folder / f"{m['symbol']}.h")
        least, declared = consts[f"{ident}_arena_min_bytes"], consts[f"{ident}_arena_bytes"]
        assert least == m["arena_min_bytes"] and declared == m["arena_bytes"]
        data = (folder / m["file"]).read_bytes()
        it = micro.interpreter(data, least)              # works, and runs
        g = micro.graph(data)
        micro.run(it, [np.zeros(d["shape"], d["dtype"]) for d in micro.inputs(it, g)], len(g.outputs))
        with pytest.raises(RuntimeError, match="allocate"):
            micro.interpreter(data, int(least * 0.9))


def test_bundle_verifies_and_is_reproducible(mcu, tmp_path):
    dist, _, entry = mcu
    bundle = dist / "shapes" / "shapes-mcu-1.0.0.tar.gz"
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        assert all(m.mtime == tar.getmembers()[0].mtime and m.uid == 0 for m in tar.getmembers())
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "shapes-mcu-1.0.0"
    assert {"SHA256SUMS", "manifest.json", "labels.txt", "README.md", "infer.py", "shapes_int8_op_resolver.h",
            "shapes_int8_model.cc", "shapes_int8_model.h", "shapes_int8.tflite", "shapes_int8_decode.tflite"} \
        <= {Path(n).name for n in names}
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (root / "labels.txt").read_text().split() == ["circle", "square", "triangle", "star"]
    # The README's C++ snippet compiles against TFLM's declarations, with the bundle's sources.
    snippet = (root / "README.md").read_text().split("```cpp\n")[1].split("```")[0]
    (tmp_path / "snippet.cc").write_text(snippet)
    compiled = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-c", str(tmp_path / "snippet.cc"), "-I",
                               str(root), "-I", str(API), "-o", str(tmp_path / "snippet.o")], capture_output=True,
                              text=True)
    assert compiled.returncode == 0, compiled.stderr
    inner = json.loads((root / "manifest.json").read_text())
    assert "path" not in inner["onnx"] and not inner["source"]["weights"].startswith("/")
    assert "build_seconds" not in inner and [a["target"] for a in inner["artifacts"]] == ["mcu"]
    # A second build from nothing (no cache) gives the same bytes.
    again = tmp_path / "again"
    result = run_cli("build", str(SPEC), "--target", "mcu", "--out", str(again), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = (hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in (bundle, again / "shapes" / "shapes-mcu-1.0.0.tar.gz"))
    assert first == second


def test_python_sample_reproduces_the_tflm_run(mcu, tmp_path):
    """infer.py (beside the artifacts and in the bundle) on the evaluation images, in TFLM with
    the declared arena, gives the outputs of deployer's own TFLM run, whose figures the
    manifest records."""
    from deployer.parity.tensor import tensor_metrics

    dist, manifest, entry = mcu
    folder = dist / "shapes" / "mcu"
    images = sorted((ROOT / "calibration" / "eval" / "images").glob("*.jpg"))
    out = tmp_path / "out.npz"
    result = subprocess.run([sys.executable, str(folder / "infer.py"), str(folder / "shapes_int8.tflite"),
                             *map(str, images), "--tflm", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "circle" in result.stdout or "square" in result.stdout
    got = np.load(out)
    cache = dist / "shapes" / ".work" / "cache"
    reference = dict(np.load(next(cache.glob("reference/*/outputs.npz"))))
    ran = next(p.parent for p in cache.glob("run/*/value.json") if json.loads(p.read_text())["runtime"] == "tflm")
    deployer_run = dict(np.load(ran / "outputs.npz"))
    tflm = next(r for r in entry["parity"]["runs"] if r["runtime"] == "tflm")
    for name in ("boxes", "scores"):
        ours = got[name].reshape(deployer_run[name].shape)   # (images, *output shape): deployer stacks per image
        np.testing.assert_allclose(ours, deployer_run[name], atol=1e-5)
        metrics = tensor_metrics(reference[name], ours)
        assert metrics["cosine"] == pytest.approx(tflm["outputs"][name]["cosine"], abs=1e-6)
        assert metrics["max_abs"] == pytest.approx(tflm["outputs"][name]["max_abs"], rel=1e-4)
