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
# The converted specs' model names: distinct, so both forms can be built into one folder.
SPEC_SUFFIX = {"exported_program": "torch", "torchscript": "torchscript"}

BACKEND = Backend(
    name="torch", build="deployer.backends.torch_module:build", format="torch", precisions=("fp32",),
    runtimes=("torch",), family="torch", preload=("torch", "onnx2torch"),
    options=(Option("form", str, "exported_program", "torch.export ExportedProgram (.pt2) or TorchScript",
                    choices=tuple(FORMS)),),
    summary="PyTorch module rebuilt from the ONNX graph (onnx2torch): .pt2 ExportedProgram or TorchScript + its spec")


def _outputs_module():
    import torch

    class Outputs(torch.nn.Module):
        """The module with its outputs as a tuple: onnx2torch returns a list for several
        outputs, which TorchScript keeps as one List[Tensor] output that the ONNX exporter
        (and a user indexing outputs) cannot take apart."""

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *inputs):
            out = self.module(*inputs)
            return tuple(out) if isinstance(out, list) else out
    return Outputs


def _Outputs(module):   # noqa: N802 - reads as the class it makes
    return _outputs_module()(module).eval()


def _own_storage(module) -> None:
    """Every parameter and buffer in storage of its own. onnx2torch can make several weights
    views of one storage (e.g. of a graph converted from TensorFlow, whose constants are
    transposed and sliced), and torch.export.save, which writes weights by storage, then
    finds no complete tensor in the group and fails ("numel: integer multiplication overflow")."""
    import torch

    for m in module.modules():
        for key, value in m._parameters.items():
            if value is not None:
                m._parameters[key] = torch.nn.Parameter(value.detach().clone().contiguous(), requires_grad=False)
        for key, value in m._buffers.items():
            if value is not None:
                m._buffers[key] = value.detach().clone().contiguous()


def build(onnx_path: str, spec: dict, precision: str, options: dict, out_dir: str, stem: str,
          calibration: str) -> dict:
    import torch

    from deployer.bridge.onnx_torch import exportable, rebuild

    model_spec = ModelSpec.from_dict(spec)
    module = rebuild(onnx_path, "torch: the PyTorch module is rebuilt from the ONNX graph, and",
                     "lowering the source at an older opset (source.opset = 17) may avoid it").eval()
    frozen = exportable(module)   # constant indices, shapes and scales as Python values
    _own_storage(module)
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
            torch.jit.save(torch.jit.trace(_Outputs(module), example), str(Path(out_dir) / name))
    inputs = [{"name": i.name, "shape": i.shape, "layout": i.layout} for i in model_spec.inputs]
    written = spec_file.write(model_spec, f"{model_spec.name}_{SPEC_SUFFIX[form]}", {"kind": "torch", "path": name},
                              inputs, out_dir, stem)
    return {"path": name, "files": [name, *written], "format": "torch",
            "notes": [f"onnx2torch module saved as {'an ExportedProgram' if form == 'exported_program' else 'TorchScript'}"
                      f" ({frozen} Slice/Reshape/Resize/Tile ops with constant inputs made static); its spec: {stem}.toml"]}
