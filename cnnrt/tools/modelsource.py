"""Turn a CLI model argument (a path or a zoo name) into an ONNX file and sample inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnrt.errors import CnnrtError, ModelLoadError


def is_zoo_name(arg: str) -> bool:
    if Path(arg).exists():
        return False
    try:
        from cnnrt import models
    except ImportError:
        return False
    return arg in models.names()


def resolve_model(arg: str, batch: int | None = None, opset: int = 17) -> Path:
    """A path as given, or a zoo model exported (cached) with a symbolic batch dimension.

    A zoo export already on disk is used as it is: torch is imported only to export."""
    p = Path(arg)
    if p.exists():
        return p
    from cnnrt import models
    from cnnrt.models.zoo_cache import find_cached

    if arg not in models.names():
        raise ModelLoadError(
            f"{arg!r} is neither a model file nor a zoo model; zoo models: {', '.join(models.names())}"
        )
    hit = find_cached(arg, opset=opset, batch=batch)
    if hit is not None:
        return hit
    try:
        export_cached = models.export_cached
    except ImportError as e:
        raise CnnrtError(f"exporting zoo model {arg!r} needs torch (pip install -e '.[zoo]'): {e}") from None
    return Path(export_cached(arg, opset=opset, batch=batch))


_ORT_TYPE_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def random_feeds(session, batch: int | None = None, seed: int = 0, shapes: dict | None = None) -> dict[str, np.ndarray]:
    """Deterministic random inputs matching the session's inputs (symbolic dims -> batch or 1;
    ``shapes`` gives whole shapes by input name).

    ``session`` is a cnnrt or an onnxruntime session (both describe inputs as NodeArgs with
    onnxruntime type strings), so the same seed gives the same feeds for either.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session.get_inputs():
        shape = []
        for axis, d in enumerate(arg.shape):
            if isinstance(d, int):
                shape.append(d)
            else:
                shape.append(batch if (batch and axis == 0) else 1)
        if shapes and arg.name in shapes:
            shape = list(shapes[arg.name])
        dtype = _ORT_TYPE_TO_NUMPY.get(arg.type)
        if dtype is None:
            raise CnnrtError(f"cannot make random data for input {arg.name!r} of type {arg.type}")
        if np.dtype(dtype).kind == "f":
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def _load_array_file(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CnnrtError(f"input file {str(path)!r} does not exist") from None
    except (OSError, ValueError) as e:
        raise CnnrtError(f"cannot read input file {str(path)!r} as .npy/.npz: {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            return {k: data[k] for k in data.files}
    return data


def load_feeds(specs: list[str], session) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read ``--input`` arguments: ``NAME=FILE.npy``, ``NAME=FILE.npz`` (key NAME or its only
    array) or a bare ``FILE.npz`` whose keys are input names. Returns (feeds, notes).

    A float array of another float width is cast to the model's dtype (with a note); any
    other mismatch is left for the session to reject with its own message.
    """
    from cnnrt.errors import InputError

    names = [a.name for a in session.get_inputs()]
    dtypes = {
        a.name: np.dtype(_ORT_TYPE_TO_NUMPY[a.type]) for a in session.get_inputs() if a.type in _ORT_TYPE_TO_NUMPY
    }
    feeds: dict[str, np.ndarray] = {}
    notes: list[str] = []
    for spec in specs:
        if "=" in spec:
            name, file = spec.split("=", 1)
            if name not in names:
                raise InputError(f"--input {spec!r}: the model has no input {name!r}; its inputs are {names}")
            data = _load_array_file(Path(file))
            if isinstance(data, dict):
                if name in data:
                    data = data[name]
                elif len(data) == 1:
                    data = next(iter(data.values()))
                else:
                    raise InputError(f"--input {spec!r}: {file} holds {sorted(data)}, none named {name!r}")
            feeds[name] = data
        else:
            data = _load_array_file(Path(spec))
            if not isinstance(data, dict):
                if len(names) != 1:
                    raise InputError(f"--input {spec!r}: a bare .npy needs NAME=; the model's inputs are {names}")
                data = {names[0]: data}
            unknown = sorted(set(data) - set(names))
            if unknown:
                raise InputError(f"--input {spec!r}: arrays {unknown} match no model input; inputs are {names}")
            feeds.update(data)
    for name, arr in list(feeds.items()):
        want = dtypes.get(name)
        if want is not None and arr.dtype != want and arr.dtype.kind == want.kind == "f":
            notes.append(f"input {name!r}: {arr.dtype} cast to {want}")
            feeds[name] = arr.astype(want)
        else:
            feeds[name] = np.ascontiguousarray(arr)
    return feeds, notes


def fixed_batch(session) -> int | None:
    """The first input's batch dimension if the model fixes it, else None (symbolic)."""
    inputs = session.get_inputs()
    if not inputs or not inputs[0].shape:
        return None
    d = inputs[0].shape[0]
    return d if isinstance(d, int) else None
