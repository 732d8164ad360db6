"""Optimization passes: each module holds one pass ``Graph -> PassResult``."""

from __future__ import annotations

from dataclasses import dataclass, field

from cnnrt.core.ir import Graph


@dataclass
class PassResult:
    """What a pass returns: the new graph, whether anything changed, and its log lines.

    ``fired`` lists (rule, node names) that were rewritten; ``declined`` lists
    (rule, node name, reason) that matched structurally but a guard blocked.
    """

    graph: Graph
    changed: bool
    fired: list[tuple[str, str]] = field(default_factory=list)
    declined: list[tuple[str, str, str]] = field(default_factory=list)
