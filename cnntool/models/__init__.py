"""Model registry and the model families (importing this package registers them all)."""

# The families, listed once: importing each registers its builders (tv registers the "tv:" namespace).
from cnntool.models import classic, cnn3, heads, resnet, simple, timm, tv  # noqa: F401
from cnntool.models.registry import (
    ModelInfo,
    check_input_size,
    check_memory,
    create_model,
    get_model_info,
    list_models,
    register_model,
    resolve_kwargs,
)

__all__ = ["ModelInfo", "check_input_size", "check_memory", "create_model", "get_model_info", "list_models", "register_model",
           "resolve_kwargs"]
