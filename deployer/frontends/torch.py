"""PyTorch frontend: load a factory, TorchScript or ExportedProgram model; lower it to ONNX;
run it as the reference.

Runs in a worker process (imports torch).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import zipfile
from pathlib import Path

import numpy as np

from deployer.errors import UserError, first_line
from deployer.frontends.base import Frontend
from deployer.runtimes.base import THREADS, Runner, Runtime, Tensor
from deployer.spec import ModelSpec, Source

FRONTEND = Frontend(kind="torch", lower="deployer.frontends.torch:lower", reference_runtime="torch",
                    summary="PyTorch: a factory (+ state_dict), TorchScript or a torch.export .pt2")
RUNTIMES = (Runtime("torch", "deployer.frontends.torch:TorchRunner", accepts=("torch",), settings=(THREADS,),
                    reference=True, family="torch", summary="the PyTorch source model itself (reference)"),)


def _import_factory(spec: ModelSpec):
    module_name, _, attr = spec.source.factory.partition(":")
    # Factories live in the user's project: look beside the spec and in the working folder.
    for folder in [*spec.source.python_path, str(Path(spec.path).parent), str(Path.cwd())]:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{spec.path}: field 'source.factory': cannot import '{module_name}' ({exc}); "
                        "add its folder to source.python_path") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{spec.path}: field 'source.factory': '{module_name}' has no function '{attr}'")
    return factory


def _load_weights(model, spec: ModelSpec) -> None:
    import torch

    try:
        state = torch.load(spec.source.weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and unsafe-global errors all mean "bad file"
        raise UserError(f"{spec.source.weights}: cannot load weights with torch.load(weights_only=True): "
                        f"{first_line(exc)}") from None
    if isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        state = state.get("state_dict", state.get("model", state))
    if not isinstance(state, dict):
        raise UserError(f"{spec.source.weights}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{spec.source.weights}: weights do not fit the model from '{spec.source.factory}': "
                        f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def load(spec: ModelSpec):
    """Return (callable model in eval mode, source form: factory | torchscript | exported_program)."""
    import torch

    # A factory without weights initialises randomly: the same seed in every process (lower,
    # reference, CoreML conversion) makes them the same model.
    torch.manual_seed(0)
    if spec.source.recipe:
        return _recipe(spec)[0], "recipe"
    if spec.source.factory:
        model = _import_factory(spec)()
        if not isinstance(model, torch.nn.Module):
            raise UserError(f"{spec.path}: field 'source.factory': '{spec.source.factory}' returned "
                            f"{type(model).__name__}, expected a torch.nn.Module")
        if spec.source.weights:
            _load_weights(model, spec)
        return _eval(model), "factory"
    path = Path(spec.source.path)
    if path.suffix == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{path}: cannot load as a torch.export ExportedProgram: {first_line(exc)}") from None
        return program, "exported_program"
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes); expected a TorchScript archive or a .pt2 ExportedProgram")
    if path.read_bytes()[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise UserError(f"{path}: a damaged or truncated archive (its zip directory is missing); copy or export "
                        "the model again")
    if not _is_torchscript(path):
        raise UserError(f"{path}: not a TorchScript archive or a .pt2 ExportedProgram; a pickled nn.Module "
                        "cannot be loaded safely: give a factory ('package.module:function') and a weights file")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval(), "torchscript"
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: cannot load TorchScript: {first_line(exc)}") from None


def _recipe(spec: ModelSpec):
    """(deployable module, head fields, anchors) of a factory's model through its recipe."""
    import torch

    from deployer.frontends.recipes import registry as recipes
    from deployer.registry import resolve

    torch.manual_seed(0)   # as load() does for factories: every process builds the same model
    recipe = recipes()[spec.source.recipe]
    module = resolve(recipe.make)(_import_factory(spec), spec)
    if spec.source.weights:
        _load_weights(module, spec)
    part, head, anchors = resolve(recipe.build)(_eval(module), spec)
    return _eval(part), head, anchors


def _eval(model):
    """model.eval(), also for a factory that holds an ExportedProgram's module: those refuse
    train()/eval() (their mode is fixed when exported), so only the others are switched."""
    try:
        return model.eval()
    except NotImplementedError:
        for module in model.modules():
            try:
                module.train(False)
            except NotImplementedError:
                module.training = False
        return model


def _holds_torchscript(model) -> bool:
    import torch

    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())


def _as_callable(model):
    return model.module() if hasattr(model, "module") and hasattr(model, "graph_signature") else model


def _export(model, form: str, spec: ModelSpec, dummy: tuple, out: Path) -> tuple[str, str]:
    """Export with the dynamo exporter, falling back to the TorchScript one; returns (exporter, note)."""
    import torch

    names = dict(input_names=[i.name for i in spec.inputs], output_names=list(spec.outputs))
    note = ""
    exporter = spec.source.exporter
    if exporter == "auto" and spec.source.recipe:
        from deployer.frontends.recipes import registry as recipes

        exporter = recipes()[spec.source.recipe].exporter
    if form == "factory" and _holds_torchscript(model):
        # Neither exporter can follow a call into a ScriptModule held by a Python module ("not
        # part of the active trace"): trace the whole factory model into TorchScript first.
        with torch.no_grad():
            model = torch.jit.trace(model, dummy, check_trace=False)
        form, note = "torchscript", "the factory's module holds TorchScript: traced with torch.jit.trace first"
    if form != "torchscript" and exporter != "torchscript":  # dynamo cannot trace a ScriptModule
        try:
            torch.onnx.export(model, dummy, str(out), opset_version=spec.source.opset, dynamo=True,
                              external_data=False, verbose=False, **names)
            return "dynamo", ""
        except Exception as exc:  # noqa: BLE001 - any dynamo failure falls back
            note = f"dynamo exporter failed ({type(exc).__name__}: {first_line(exc)})"
            if form == "exported_program" or exporter == "dynamo":
                what = "the ExportedProgram" if form == "exported_program" else "the model (source.exporter = 'dynamo')"
                raise UserError(f"{spec.source.path or spec.source.factory}: cannot lower {what} to ONNX: {note}") from None
    try:
        with torch.no_grad():
            torch.onnx.export(_as_callable(model), dummy, str(out), opset_version=spec.source.opset, dynamo=False,
                              do_constant_folding=True, **names)
    except Exception as exc:  # noqa: BLE001 - the model cannot be lowered: say so with both exporters' reasons
        where = spec.source.path or spec.source.factory
        raise UserError(f"{where}: cannot lower to ONNX: the TorchScript exporter failed "
                        f"({type(exc).__name__}: {first_line(exc)})" + (f"; {note}" if note else "")) from None
    return "torchscript", note


def _check_runs(model, form: str, spec: ModelSpec, dummy: tuple) -> None:
    """One forward pass on zeros of the spec's input shapes before exporting: a model that
    cannot take them (a wrong shape, channels last for a channels-first model) is the spec's
    mistake, said as such, not an exporter's error."""
    import torch

    if form == "exported_program":
        return   # its input shapes are fixed in the program; the exporter names a mismatch
    try:
        with torch.no_grad():
            model(*dummy)
    except Exception as exc:  # noqa: BLE001 - any failure here is the input's
        shapes = ", ".join(f"inputs[{i}].shape = {list(x.shape)} ({inp.layout})" for i, (x, inp)
                           in enumerate(zip(dummy, spec.inputs)))
        raise UserError(f"{spec.path}: field 'inputs[0].shape': the model does not run on {shapes}: "
                        f"{first_line(exc, 200)}; check the shape and the layout (a PyTorch model takes NCHW)") \
            from None


def lower(spec: dict, out_path: str, source_sha256: str, toolchain: dict) -> dict:
    """Worker stage: the source model as a checked, simplified ONNX file with metadata."""
    import onnx
    import torch

    from deployer.ir import onnx_ir

    spec = ModelSpec.from_dict(spec)
    out = Path(out_path)
    head = None
    if spec.source.recipe:
        model, head, anchors = _recipe(spec)
        form = "recipe"
        if anchors is not None and len(anchors):   # a two-stage model's recipe has none
            # The anchors live beside the ONNX file, named relative to its folder (the cache moves it).
            np.save(out.parent / "anchors.npy", anchors.astype(np.float32))
            head = {**head, "anchors": "anchors.npy"}
    else:
        model, form = load(spec)
    dummy = tuple(torch.zeros(i.shape) for i in spec.inputs)
    _check_runs(model, form, spec, dummy)
    raw = out.with_suffix(".raw.onnx")
    exporter, note = _export(model, form, spec, dummy, raw)
    lowered = onnx.load(str(raw))
    raw.unlink()
    info = onnx_ir.finalize(lowered, out, spec, {
        "deployer.source_sha256": source_sha256, "deployer.source_kind": "torch",
        "deployer.source_form": form, "deployer.exporter": exporter, "deployer.toolchain": toolchain})
    return {**info, "exporter": exporter, "exporter_note": note, "source_form": form,
            **({"head": head} if head else {})}


class TorchRunner(Runner):
    """The reference: the source model run by PyTorch itself."""

    runtime = "torch"

    def load(self) -> None:
        import torch

        threads = self.threads
        if threads:
            torch.set_num_threads(threads)
        spec = self.spec
        if self.artifact and self.artifact != spec.source.path:
            # An artifact of the `torch` backend (.pt2 or TorchScript), not the source model.
            spec = dataclasses.replace(spec, source=Source(kind="torch", path=self.artifact))
        model, form = load(spec)
        self.model = _as_callable(model)
        self.settings = {"torch": torch.__version__, "source_form": form, "threads": threads or "default"}

    def unload(self) -> None:
        self.model = None

    def io(self):
        return [Tensor(i.name) for i in self.spec.inputs], [Tensor(n) for n in self.spec.outputs]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.model(*[torch.from_numpy(feed[i.name]) for i in self.spec.inputs])
        if isinstance(out, torch.Tensor):
            out = (out,)
        if isinstance(out, dict):
            out = tuple(out.values())
        return {name: t.detach().cpu().numpy() for name, t in zip(self.spec.outputs, out)}
