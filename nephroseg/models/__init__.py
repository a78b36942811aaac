"""Network architectures, each registered by name (see ``registry``); models know nothing of files."""

from nephroseg.models import (
    deeplab_attn,  # noqa: F401  (each import registers its models)
    dynunet3d,  # noqa: F401
    fcn8s,  # noqa: F401
    linknet,  # noqa: F401
    maskrcnn,  # noqa: F401
    resunet25d,  # noqa: F401
    unet,  # noqa: F401
)
from nephroseg.models.registry import (
    ModelInfo,
    build_model,
    model_info,
    parameter_count,
    register_model,
    registered_models,
)

__all__ = ["ModelInfo", "build_model", "model_info", "parameter_count", "register_model", "registered_models"]
