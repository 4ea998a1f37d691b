"""Internal: swapping a model's linear layers for another implementation of the same map
(oneDNN float32, int8): the one walk over the model that both use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def swap_linears(
    module: torch.nn.Module, replacement: Callable[[torch.nn.Linear], torch.nn.Module]
) -> torch.nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by ``replacement(linear)``, in place."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, replacement(child))
    return module


def swap_decoder_linears(
    model: torch.nn.Module, replacement: Callable[[torch.nn.Linear], torch.nn.Module]
) -> torch.nn.Module:
    """Replace every ``nn.Linear`` inside the decoder layers by ``replacement(linear)``, in
    place, layer by layer. The token embeddings and norms (outside the linears) are left
    alone."""
    base: Any = getattr(model, "get_decoder", lambda: model)()
    for layer in base.layers:
        swap_linears(layer, replacement)
    return model
