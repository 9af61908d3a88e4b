"""Models: the built-in MLP, or a user factory ``package.module:function``.

Factory contract: ``function(n_inputs: int, n_outputs: int, config: dict) -> torch.nn.Module`` whose
forward maps float32 ``[N, n_inputs]`` (already preprocessed) to ``[N, n_outputs]``: logits for
classification, the prediction for regression (n_outputs = 1). It must be exportable to ONNX."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from lifelong_cli.errors import ConfigError


class MLP(nn.Module):
    def __init__(self, n_inputs: int, n_outputs: int, hidden: list[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(model_cfg: Any, n_inputs: int, n_outputs: int) -> nn.Module:
    if model_cfg.factory:
        mod_name, _, fn_name = model_cfg.factory.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model.factory: cannot load {model_cfg.factory!r} ({exc})",
                              hint="the module must be importable (on PYTHONPATH) and define the function") from None
        model = fn(n_inputs, n_outputs, model_cfg.model_dump())
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model.factory {model_cfg.factory!r} returned {type(model).__name__}, not a torch.nn.Module",
                              hint="see the factory contract in the README")
        return model
    return MLP(n_inputs, n_outputs, list(model_cfg.hidden), model_cfg.dropout)


class Scored(nn.Module):
    """What is exported: the network plus softmax (classification) so ONNX outputs probabilities."""

    def __init__(self, net: nn.Module, task: str) -> None:
        super().__init__()
        self.net, self.task = net, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return torch.softmax(y, dim=1) if self.task == "classification" else y
