"""numba.cuda kernels; importing this package registers them under backend="cuda".

Same builder signature as kernels/cpu: ``build(node, graph) -> run(ins, outs)``, called
once when the session is built. Unlike the CPU kernels, ``ins``/``outs`` are *flat 1-D
device arrays* (views into the one device arena, or constants uploaded at build time);
builders take shapes from ``graph.values``. Launch geometry comes from ``config``; device
questions go through ``device`` (which also works in numba's CUDA simulator).

numba reads NUMBA_ENABLE_CUDASIM when it is first imported: set it before importing numba
(or cnnrt) to run these kernels without a GPU.
"""

from . import conv, conv_transpose, elementwise, gemm, layernorm, norm, pool, reduce, resize, squeeze_excite, tensor  # noqa: F401
from .device import patch_simulator_shared_arrays

patch_simulator_shared_arrays()  # a simulator race would otherwise corrupt tiled kernels
