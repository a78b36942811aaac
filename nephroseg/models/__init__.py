"""Network architectures, each registered by name (see ``registry``); models know nothing of files."""

from nephroseg.models import (
    maskrcnn,  # noqa: F401
    resunet25d,  # noqa: F401  (registers the model)
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
