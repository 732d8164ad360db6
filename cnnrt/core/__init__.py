"""The core: the IR (values, nodes, graphs), the op-definition table and constant evaluation.

Nothing here imports the runtime, the tools, the passes or the kernels."""
