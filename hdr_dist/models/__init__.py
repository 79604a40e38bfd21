"""The models: architectures, the recipes that configure them, their training config and checkpoints.

As torchvision's ``models``: ``models.build("cnn", 10)`` gives a recipe's model.
"""

from hdr_dist.models.architectures import ARCHITECTURES, CNN, CRNN, LSTM, ReluLSTMLayer
from hdr_dist.models.recipes import (
    RECIPES,
    Recipe,
    build,
    count_params,
    from_config,
    recipe,
)

__all__ = [
    "ARCHITECTURES",
    "CNN",
    "CRNN",
    "LSTM",
    "RECIPES",
    "Recipe",
    "ReluLSTMLayer",
    "build",
    "count_params",
    "from_config",
    "recipe",
]
