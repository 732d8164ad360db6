"""Numba CPU kernels; importing this package registers them."""

from . import (
    activation,  # noqa: F401,E402
    blocked,  # noqa: F401,E402
    conv,  # noqa: F401,E402
    conv_blocked,  # noqa: F401,E402
    conv_transpose,  # noqa: F401,E402
    elementwise,  # noqa: F401,E402
    gemm,  # noqa: F401,E402
    layernorm,  # noqa: F401,E402
    norm,  # noqa: F401,E402
    pool,  # noqa: F401,E402
    qconv,  # noqa: F401,E402
    quant,  # noqa: F401,E402
    reduce,  # noqa: F401,E402
    resize,  # noqa: F401,E402
    squeeze_excite,  # noqa: F401,E402
    tensor,  # noqa: F401,E402
)
