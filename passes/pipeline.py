"""The ordered list of passes and the manager that runs them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cnnrt.errors import CnnrtError, PassError
from cnnrt.ir import Graph

from . import PassResult

PassFn = Callable[[Graph], PassResult]

# (name, function, minimum opt_level). Filled in by the passes issue; order matters.
PASSES: list[tuple[str, PassFn, int]] = []

MAX_ROUNDS = 8


@dataclass
class PipelineLog:
    """Per pass: what fired (rule, node) and what was declined (rule, node, reason)."""

    fired: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    declined: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    rounds: int = 0

    def lines(self) -> list[str]:
        out = []
        for name in self.fired.keys() | self.declined.keys():
            for rule, node in self.fired.get(name, []):
                out.append(f"[{name}] fired {rule}: {node}")
            for rule, node, why in self.declined.get(name, []):
                out.append(f"[{name}] declined {rule} at {node}: {why}")
        return out


def pass_names() -> list[str]:
    return [n for n, _, _ in PASSES]


def run_pipeline(graph: Graph, opt_level: int = 2, disabled: Iterable[str] = ()) -> tuple[Graph, PipelineLog]:
    """Run the enabled passes in order, repeating until nothing changes (at most MAX_ROUNDS)."""
    disabled = set(disabled)
    unknown = disabled - set(pass_names())
    if unknown:
        raise PassError(f"unknown pass name(s) {sorted(unknown)}; passes are {pass_names()}")
    active = [(n, f) for n, f, lvl in PASSES if lvl <= opt_level and n not in disabled]
    log = PipelineLog()
    for rnd in range(MAX_ROUNDS if active else 0):
        log.rounds = rnd + 1
        changed = False
        declined: dict[str, list[tuple[str, str, str]]] = {}
        for i, (name, fn) in enumerate(active):
            try:
                res = fn(graph)
                res.graph.verify()
            except CnnrtError as e:
                before = [n for n, _ in active[:i]]
                raise PassError(f"pass {name!r} failed (after {before}): {e}") from e
            graph = res.graph
            changed |= res.changed
            log.fired.setdefault(name, []).extend(res.fired)
            declined.setdefault(name, []).extend(res.declined)
        log.declined = declined  # what still blocks a rewrite in the final graph
        if not changed:
            break
    return graph, log
