"""Model registry and the model families (importing this package registers them all)."""

from cnntool.models import classic, cnn3, resnet, simple, tv  # noqa: F401 - registration side effects
from cnntool.models.registry import (
    ModelInfo,
    check_input_size,
    create_model,
    get_model_info,
    list_models,
    register_model,
    resolve_kwargs,
)

__all__ = ["ModelInfo", "check_input_size", "create_model", "get_model_info", "list_models", "register_model",
           "resolve_kwargs"]
