"""Network architectures, each registered by name (see ``registry``); models know nothing of files.

Model modules are imported on first use of their name, not here (see ``registry.MODEL_MODULES``).
"""

from nephroseg.models.registry import (
    MODEL_MODULES,
    ModelInfo,
    build_model,
    model_info,
    parameter_count,
    register_model,
    registered_models,
)

__all__ = [
    "MODEL_MODULES",
    "ModelInfo",
    "build_model",
    "model_info",
    "parameter_count",
    "register_model",
    "registered_models",
]
