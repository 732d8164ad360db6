"""Coverage-guided fuzzing of model loading and running (atheris / libFuzzer).

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/fuzz_load.py -max_total_time=300 -artifact_prefix=/tmp/cnnrt-fuzz/

Each input is either (first byte even) raw bytes handed to ``InferenceSession`` as a model,
or (odd) a recipe: the rest of the bytes drive the structured mutators of fuzz_mutators.py on a
valid base model (hand-built conv nets, LeNet-5). Anything but a CnnrtError escaping cnnrt,
or a disagreement with onnxruntime, is a crash: libFuzzer saves the input as
``<artifact_prefix>crash-<sha1>``. Replay one with ``python tests/fuzz/fuzz_load.py FILE``.

Without atheris (or with --plain) the same TestOneInput runs on random inputs from a seeded
loop until -max_total_time / -runs is reached; crashes are then written the same way.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

warnings.simplefilter("ignore")

try:
    if "--plain" in sys.argv:
        raise ImportError("--plain")
    import atheris
except ImportError:
    atheris = None

if atheris is not None:
    # instrument cnnrt's own Python (frontend + converters, session, passes, planner) for
    # coverage feedback. Not the kernels: numba compiles from bytecode and would choke on the
    # instrumentation. numpy / onnx stay uninstrumented (slow, and not what we are testing).
    with atheris.instrument_imports(
        include=["cnnrt", "fuzz_lib", "fuzz_mutators", "robust_models"], exclude=["cnnrt.kernels"]
    ):
        import fuzz_lib
        import fuzz_mutators

        import cnnrt.frontends.onnx  # noqa: F401
        import cnnrt.frontends.ops_elementwise  # noqa: F401
        import cnnrt.frontends.ops_nn  # noqa: F401
        import cnnrt.frontends.ops_resize  # noqa: F401
        import cnnrt.frontends.ops_tensor  # noqa: F401
        import cnnrt.passes.pipeline  # noqa: F401
        import cnnrt.runtime.session  # noqa: F401
else:
    import fuzz_lib
    import fuzz_mutators


class _ByteChooser(fuzz_mutators.Chooser):
    """Decisions from a byte string (the plain fallback's stand-in for FuzzedDataProvider)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self, lo: int, hi: int) -> int:
        if hi <= lo:
            return lo
        span = hi - lo + 1
        nbytes = max(1, (span.bit_length() + 7) // 8)
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return lo + int.from_bytes(chunk.ljust(nbytes, b"\0"), "little") % span


def TestOneInput(data: bytes) -> None:  # noqa: N802  (atheris' name)
    if not data:
        return
    if data[0] % 2 == 0:
        fuzz_lib.check(data[1:], compare_ort=False)
    else:
        chooser = fuzz_mutators.FdpChooser(atheris.FuzzedDataProvider(data[1:])) if atheris else _ByteChooser(data[1:])
        fuzz_lib.fuzz_one(chooser)


def _seed_corpus(rng: random.Random):
    """Valid models (so raw-bytes mode starts from real protobufs) and random recipes."""
    for name in fuzz_lib.BASE_MODELS:
        yield b"\0" + fuzz_lib.base_model(name).SerializeToString()
    while True:
        if rng.random() < 0.3:
            base = fuzz_lib.base_model(rng.choice(list(fuzz_lib.BASE_MODELS))).SerializeToString()
            blob = bytearray(base)
            for _ in range(rng.randint(1, 8)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            yield b"\0" + bytes(blob[: rng.randint(1, len(blob))])
        else:
            yield b"\1" + rng.randbytes(rng.randint(8, 256))


def _arg(name: str, default: float) -> float:
    for a in sys.argv[1:]:
        if a.startswith(f"-{name}="):
            return float(a.split("=", 1)[1])
    return default


def plain_main() -> int:
    """The fallback: random inputs in a loop; each crash is saved and reported, not fatal."""
    limit, runs = _arg("max_total_time", 60), int(_arg("runs", 0))
    prefix = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("-artifact_prefix=")), "./")
    files = [a for a in sys.argv[1:] if not a.startswith("-")]
    if files:  # replay
        for f in files:
            with open(f, "rb") as fh:
                TestOneInput(fh.read())
        print(f"replayed {len(files)} input(s) without a crash")
        return 0
    rng = random.Random(int(_arg("seed", 0)))
    t0, n, crashes = time.time(), 0, 0
    for blob in _seed_corpus(rng):
        if time.time() - t0 > limit or (runs and n >= runs):
            break
        n += 1
        try:
            TestOneInput(blob)
        except Exception:
            crashes += 1
            path = f"{prefix}crash-{hashlib.sha1(blob).hexdigest()}"
            with open(path, "wb") as fh:
                fh.write(blob)
            print(f"CRASH #{crashes} saved to {path}\n{traceback.format_exc()}", flush=True)
    print(f"plain loop: {n} inputs in {time.time() - t0:.0f} s, {crashes} crash(es)")
    return 1 if crashes else 0


def main() -> int:
    if atheris is None:
        return plain_main()
    argv = [a for a in sys.argv if a != "--plain"]
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
