"""``cnnrt batch MODEL INPUT -o OUTPUT``: run a model over a whole dataset.

INPUT is a folder of images (JPEG/PNG) or .npy tensors, or a Parquet file/folder with an image-bytes or
tensor column. OUTPUT is a folder of Parquet shards: each item's id, its top-k classes and scores (or the
raw outputs with --topk 0) and an error column; a bad item is an error row, never a failed run. Rerunning
an interrupted run computes only the missing shards. Images are resized (shorter side), centre-cropped to
the model's input and normalised (--mean/--std, ImageNet's by default)."""

from __future__ import annotations

import sys
import time

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt batch resnet18 photos/ -o predictions/
  cnnrt batch resnet18 photos/ -o predictions/ --engine ray
  cnnrt batch model.onnx table.parquet -o out/ --column image --topk 0
  cnnrt batch model.onnx photos/ -o out/ --engine ray --address ray://head:10001"""

HELP = "run a model over a folder of images / .npy or a Parquet table, on this machine or a Ray cluster"


def _floats(text: str) -> tuple[float, ...]:
    import argparse

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _at_least(low: int):
    def parse(text: str) -> int:
        import argparse

        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return v

    return parse


_positive = _at_least(1)
nonnegative = _at_least(0)  # also cnnrt run's --topk


def add_arguments(p) -> None:
    options.add_model(p)
    p.add_argument("input", metavar="INPUT", help="a folder of images or .npy files, or a Parquet file or folder")
    p.add_argument("--output", "-o", required=True, metavar="FOLDER", help="the folder of Parquet shards to write")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="where to run (default: local)")
    p.add_argument("--batch-size", type=_positive, default=32, help="items per inference call (default 32)")
    p.add_argument("--shard-size", type=_positive, default=1024, help="items per output shard (default 1024)")
    p.add_argument(
        "--topk", type=nonnegative, default=5, help="classes kept per item (default 5; 0: raw output tensors)"
    )
    p.add_argument("--no-softmax", action="store_true", help="scores are the raw outputs, not softmax probabilities")
    p.add_argument(
        "--resize", type=_positive, default=None, help="shorter side before the centre crop (default crop/0.875)"
    )
    p.add_argument(
        "--mean", type=_floats, default=None, metavar="M[,M,M]", help="per-channel mean (default ImageNet's)"
    )
    p.add_argument("--std", type=_floats, default=None, metavar="S[,S,S]", help="per-channel std (default ImageNet's)")
    p.add_argument("--column", default=None, help="Parquet: the image-bytes or tensor column (default: the first one)")
    p.add_argument("--id-column", default=None, help="Parquet: the id column (default: id or path, else FILE#ROW)")
    options.add_threads(
        p, "local: session threads (default: all cores); ray: threads per actor (default: from the CPUs)"
    )
    p.add_argument("--workers", type=_positive, default=None, help="local: decode threads (default: half the cores)")
    p.add_argument("--address", default=None, help="ray: the cluster to join (default: start a local one)")
    p.add_argument("--actors", type=_positive, default=None, help="ray: inference actors (default: from the CPUs)")


class _Rate:
    """Draws items/s and the ETA on a terminal (stderr); nothing otherwise."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.first: tuple[float, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = (now, done)
            self.progress.total = total
        self.progress.done = done
        t0, d0 = self.first
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = f"ETA {(total - done) / rate:.0f}s" if rate > 0 else "ETA -"
        self.progress.set_note(f"{rate:.1f} items/s {eta}")


def run(args) -> int:
    import cnnrt.batch
    from cnnrt.tools.modelsource import resolve_model
    from cnnrt.tools.progress import Progress

    path = resolve_model(args.model)
    threads = args.threads
    if threads is not None and threads < 1:
        from cnnrt.errors import CnnrtError

        raise CnnrtError(f"--threads must be >= 1, got {threads}")
    with Progress(0, "batch") as bar:
        summary = cnnrt.batch.run(
            str(path),
            args.input,
            args.output,
            engine=args.engine,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            topk=args.topk,
            use_softmax=not args.no_softmax,
            resize=args.resize,
            mean=args.mean,
            std=args.std,
            column=args.column,
            id_column=args.id_column,
            threads=threads,
            workers=args.workers,
            address=args.address,
            actors=args.actors,
            progress=_Rate(bar),
            on_plan=lambda plan: print(
                f"ray     {plan.nodes} node(s), {plan.cpus} CPUs: {plan.actors} actor(s) x {plan.threads_per_actor} thread(s)"
            ),
        )
    resumed = (
        f", {summary.items - summary.computed} resumed from {summary.resumed_shards} shard(s)"
        if summary.resumed_shards
        else ""
    )
    print(
        f"batch   {summary.computed} items in {summary.seconds:.2f} s ({summary.items_per_s:.1f} items/s), "
        f"{summary.errors} error rows{resumed} -> {summary.output} ({summary.shards} shards)"
    )
    sys.stdout.flush()
    return 0
