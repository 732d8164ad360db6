"""What one batch run computes, shared by both engines so that they give the same rows.

A :class:`Job` holds the model bytes and the per-item facts (input name and shape, preprocessing, top-k or
raw outputs). The work is two steps on column batches (dicts of numpy arrays, Ray Data's "numpy" batch
format): :func:`load_batch` turns item refs into a tensor column and an error column, :func:`infer_batch`
runs a session on the good items and turns the outputs into result columns. A bad item keeps its error and
gets empty results; it never stops the run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace

import numpy as np

from cnnrt.batch.images import Preprocess, class_names, preprocess_for, softmax, top_k
from cnnrt.batch.sources import Loader, Ref
from cnnrt.errors import CnnrtError, InputError
from cnnrt.runtime.session import InferenceSession

REF_COLUMNS = [f.name for f in fields(Ref)]


@dataclass(frozen=True)
class Job:
    model_bytes: bytes
    input_name: str
    item_shape: tuple[int, ...]
    fixed_batch: int | None  # the model's batch dimension when it is not symbolic
    output_names: tuple[str, ...]
    num_classes: int | None  # the first output's width when it is (N, classes)
    preprocess: Preprocess | None
    topk: int  # 0: the raw output tensors instead of top-k
    use_softmax: bool

    @classmethod
    def create(
        cls,
        model_bytes: bytes,
        *,
        topk: int = 5,
        use_softmax: bool = True,
        resize: int | None = None,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> Job:
        if topk < 0:
            raise InputError(f"--topk must be >= 0 (0: raw outputs), got {topk}")
        with InferenceSession(model_bytes, threads=1) as sess:
            inputs, outputs = sess.get_inputs(), sess.get_outputs()
        if len(inputs) != 1:
            raise InputError(f"batch inference needs a model with one input; this one has {len(inputs)}")
        shape = list(inputs[0].shape)
        if not shape or not all(isinstance(d, int) for d in shape[1:]):
            raise InputError(f"input {inputs[0].name!r} has shape {shape}: only the batch dimension may be symbolic")
        item_shape = tuple(shape[1:])
        out0 = list(outputs[0].shape)
        num_classes = out0[1] if len(out0) == 2 and isinstance(out0[1], int) else None
        if topk and num_classes is None:
            raise InputError(
                f"--topk needs a classifier output (N, classes); output {outputs[0].name!r} is {out0} (use --topk 0)"
            )
        is_image = len(item_shape) == 3 and item_shape[0] in (1, 3)
        return cls(
            model_bytes=model_bytes,
            input_name=inputs[0].name,
            item_shape=item_shape,
            fixed_batch=shape[0] if isinstance(shape[0], int) else None,
            output_names=tuple(o.name for o in outputs),
            num_classes=num_classes,
            preprocess=preprocess_for(item_shape, resize, mean, std) if is_image else None,
            topk=topk,
            use_softmax=use_softmax,
        )

    def without_model(self) -> Job:
        """This job minus the model bytes (shipped separately, once, through Ray's object store)."""
        return replace(self, model_bytes=b"")

    def session(self, threads: int | None, model_bytes: bytes | None = None) -> InferenceSession:
        return InferenceSession(model_bytes or self.model_bytes, threads=threads)

    def fingerprint(self) -> dict:
        """The settings an output folder's rows depend on; a resumed run must have the same."""
        return {
            "model_sha256": hashlib.sha256(self.model_bytes).hexdigest(),
            "preprocess": repr(self.preprocess),
            "topk": self.topk,
            "softmax": self.use_softmax,
        }

    def labels(self) -> tuple[str, ...] | None:
        return class_names(self.num_classes) if self.topk and self.num_classes else None


def load_batch(batch: dict[str, np.ndarray], job: Job) -> dict[str, np.ndarray]:
    """Ref columns -> index, id, error ("" when fine) and tensor (zeros where the item is bad)."""
    loader = Loader(job.item_shape, job.preprocess)
    n = len(batch["index"])
    tensor = np.zeros((n, *job.item_shape), np.float32)
    errors = np.full(n, "", dtype=object)
    for i in range(n):
        ref = Ref(**{c: _plain(batch[c][i]) for c in REF_COLUMNS})
        try:
            tensor[i] = loader(ref)
        except InputError as e:
            errors[i] = str(e)
    return {
        "index": np.asarray(batch["index"], np.int64),
        "id": np.asarray(batch["id"], object),
        "error": errors,
        "tensor": tensor,
    }


def _plain(value):
    """A Python int/str from a column cell (Ray hands over numpy scalars, the local engine Python objects)."""
    return value.item() if isinstance(value, np.generic) else value


def refs_to_columns(refs: list[Ref]) -> dict[str, np.ndarray]:
    return {c: np.asarray([getattr(r, c) for r in refs], dtype=object) for c in REF_COLUMNS}


def _run(sess: InferenceSession, job: Job, x: np.ndarray) -> list[np.ndarray]:
    if job.fixed_batch is None:
        return sess.run(None, {job.input_name: x})
    parts = []  # a fixed batch dimension: run it in chunks of that size, the last one zero-padded
    for start in range(0, len(x), job.fixed_batch):
        chunk = x[start : start + job.fixed_batch]
        pad = job.fixed_batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *job.item_shape), np.float32)])
        parts.append([o[: len(chunk) - pad] for o in sess.run(None, {job.input_name: chunk})])
    return [np.concatenate(outs) for outs in zip(*parts)]


def infer_batch(batch: dict[str, np.ndarray], job: Job, sess: InferenceSession) -> dict[str, np.ndarray]:
    """Loaded columns -> index, id, error and the result columns (classes + scores, or one per output)."""
    errors = np.asarray(batch["error"], dtype=object).copy()
    good = np.flatnonzero(errors == "")
    outputs: list[np.ndarray | None] = [None] * len(job.output_names)
    if len(good):
        try:
            outputs = _run(sess, job, np.ascontiguousarray(batch["tensor"][good]))
        except CnnrtError:  # isolate the item(s) the model refuses: run them one by one
            per_item = []
            for i in good:
                try:
                    per_item.append(_run(sess, job, batch["tensor"][i : i + 1]))
                except CnnrtError as e:
                    errors[i] = f"{batch['id'][i]}: {str(e).splitlines()[0]}"
                    per_item.append(None)
            good = np.asarray([i for i, o in zip(good, per_item) if o is not None], np.int64)
            ok = [o for o in per_item if o is not None]
            outputs = [np.concatenate(outs) for outs in zip(*ok)] if ok else outputs
    n = len(errors)
    result = {"index": np.asarray(batch["index"], np.int64), "id": np.asarray(batch["id"], object), "error": errors}
    if job.topk:
        k = min(job.topk, job.num_classes)
        classes, scores = np.full((n, k), -1, np.int32), np.zeros((n, k), np.float32)
        if len(good):
            logits = outputs[0].reshape(len(good), -1)
            c, s = top_k(softmax(logits) if job.use_softmax else logits.astype(np.float64), k)
            classes[good], scores[good] = c, s
        result.update(classes=classes, scores=scores)
    else:
        for name, out in zip(job.output_names, outputs):
            width = int(np.prod(out.shape[1:])) if out is not None else 0
            col = np.zeros((n, width), np.float32)
            if out is not None:
                col[good] = out.reshape(len(good), -1)
            result[f"output:{name}"] = col
    return result
