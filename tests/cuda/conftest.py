"""CUDA tests: where they run.

numba decides at its first import whether ``numba.cuda`` is the real driver or the CUDA
simulator (NUMBA_ENABLE_CUDASIM=1), so the kernel tests in ``sim/`` cannot share a
process with tests that already imported numba without the simulator. Therefore:

* with the simulator enabled in this process, or a real GPU, ``sim/`` is collected here;
* otherwise ``sim/`` is skipped at collection and ``test_cuda_simulator.py`` runs it in a
  subprocess with NUMBA_ENABLE_CUDASIM=1 (that is what a plain ``pytest`` does here).

Tests marked ``@pytest.mark.gpu`` need a real GPU and skip without one (also in the simulator).
"""

from __future__ import annotations

import pytest
from cuda_test_env import in_process, real_gpu

collect_ignore = [] if in_process() else ["sim"]


@pytest.fixture(autouse=True)
def _skip_gpu_only(request):
    if request.node.get_closest_marker("gpu") and not real_gpu():
        pytest.skip("needs a real CUDA GPU")
