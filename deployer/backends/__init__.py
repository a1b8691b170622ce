"""The backend registry: every module in this package that declares `BACKEND` (backends/base.py).

A backend's build is a worker stage

    build(onnx_path, spec, precision, options, out_dir, stem, calibration) -> dict

that writes the artifact's files into `out_dir` and returns {"path": primary file name,
"files": [names], "format": str, "notes": [str]} (and "quantization" for INT8).
`options` arrive validated against the declaration, defaults filled in. `calibration` is
an .npz of preprocessed calibration inputs in the source layout. A profile may also name a
backend as 'package.module:function' with the same signature (a custom NPU compiler, say).

Adding a backend is adding a module here (docs/ARCHITECTURE.md, "Adding a backend"):
nothing else lists backend names.
"""

from __future__ import annotations

from functools import cache

from deployer.backends.base import Backend, custom
from deployer.errors import UserError
from deployer.registry import discover


@cache
def registry() -> dict[str, Backend]:
    """Backend name -> declaration."""
    return {b.name: b for b in discover(__name__, __path__, "BACKEND", lambda b: b.name)}


def get(name: str) -> Backend:
    """The declaration of a backend name, or of a custom 'package.module:function' one."""
    if ":" in name:
        return custom(name)
    backends = registry()
    if name not in backends:
        raise UserError(f"unknown backend '{name}' (known: {', '.join(backends)}, or 'package.module:function')")
    return backends[name]
