"""PyTorch backend (target `torch`): the model rebuilt from the ONNX graph as a PyTorch module
(onnx2torch), saved as a torch.export ExportedProgram (`.pt2`, variant `pt2`) or TorchScript
(`.torchscript`, option form), for teams that serve, fine-tune or audit in PyTorch; a spec
beside it (`<stem>.toml`, bridge/spec_file.py) makes it a source of its own."""

from __future__ import annotations

from pathlib import Path

from deployer.backends.base import Backend
from deployer.bridge import spec_file
from deployer.errors import StageError, first_line
from deployer.options import Option
from deployer.spec import ModelSpec

FORMS = {"exported_program": ".pt2", "torchscript": ".torchscript"}

BACKEND = Backend(
    name="torch", build="deployer.backends.torch_module:build", format="torch", precisions=("fp32",),
    runtimes=("torch",), family="torch", preload=("torch", "onnx2torch"),
    options=(Option("form", str, "exported_program", "torch.export ExportedProgram (.pt2) or TorchScript",
                    choices=tuple(FORMS)),),
    summary="PyTorch module rebuilt from the ONNX graph (onnx2torch): .pt2 ExportedProgram or TorchScript + its spec")


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    import torch

    from deployer.backends.coreml import _onnx_as_torch  # onnx2torch, with the ops it lacks named
    from deployer.bridge.onnx_torch import exportable

    model_spec = ModelSpec.from_dict(spec)
    module = _onnx_as_torch(onnx_path).eval()
    frozen = exportable(module)   # constant indices, shapes and scales as Python values
    example = tuple(torch.zeros(i.shape) for i in model_spec.inputs)
    form = options["form"]
    name = f"{stem}{FORMS[form]}"
    with torch.no_grad():
        if form == "exported_program":
            try:
                program = torch.export.export(module, example)
            except Exception as exc:  # noqa: BLE001 - torch.export's many refusals: name the first line
                raise StageError(f"torch: torch.export cannot capture the module onnx2torch rebuilt from the ONNX "
                                 f"graph: {first_line(exc)}; the TorchScript form (options.form = "
                                 "\"torchscript\") traces it instead") from None
            torch.export.save(program, str(Path(out_dir) / name))
        else:
            torch.jit.save(torch.jit.trace(module, example), str(Path(out_dir) / name))
    inputs = [{"name": i.name, "shape": i.shape, "layout": i.layout} for i in model_spec.inputs]
    (Path(out_dir) / f"{stem}.toml").write_text(spec_file.text(
        model_spec, f"{model_spec.name}_torch", {"kind": "torch", "path": name}, inputs, f"{stem}.toml"))
    return {"path": name, "files": [name, f"{stem}.toml"], "format": "torch",
            "notes": [f"onnx2torch module saved as {'an ExportedProgram' if form == 'exported_program' else 'TorchScript'}"
                      f" ({frozen} Slice/Reshape/Resize/Tile ops with constant inputs made static); its spec: {stem}.toml"]}
