"""Bias-free scalar MLPs with per-layer weight normalisation constants."""

from __future__ import annotations

import math

import torch

NONLINEARITIES = {
    None: torch.nn.Identity,
    "silu": torch.nn.SiLU,
    "mish": torch.nn.Mish,
    "gelu": torch.nn.GELU,
    "tanh": torch.nn.Tanh,
}


class ScalarMLP(torch.nn.Module):
    r"""MLP without biases: :math:`y = W_L \sigma(\dots \sigma(W_1 x))`.

    Each weight :math:`W_l` (shape ``(in, out)``) is stored with unit-variance entries and
    multiplied in the forward pass by :math:`\alpha_l = g_l / \sqrt{\mathrm{in}_l}` (gain
    :math:`g_l = \sqrt 2` after a nonlinearity, else 1), so that activations keep unit variance
    at initialisation. With no biases and :math:`\sigma(0) = 0`, a zero input gives a zero output,
    which keeps edge features exactly zero beyond the cutoff.

    Parameters
    ----------
    input_dim, output_dim : int
        Feature sizes.
    hidden_layers_depth : int
        Number of hidden layers (0 gives a linear map).
    hidden_layers_width : int or None
        Width of each hidden layer; required when ``hidden_layers_depth > 0``.
    nonlinearity : str or None
        ``"silu"`` (default), ``"mish"``, ``"gelu"``, ``"tanh"`` or None.
    forward_weight_init : bool
        Normalise by fan-in (True) or by fan-out (False).
    dtype : torch.dtype
        Parameter dtype.
    generator : torch.Generator or None
        Source of the initial weights (uniform on [-sqrt 3, sqrt 3]).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_layers_depth: int = 0,
        hidden_layers_width: int | None = None,
        nonlinearity: str | None = "silu",
        forward_weight_init: bool = True,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"Unknown nonlinearity {nonlinearity!r}; choose one of {list(NONLINEARITIES)}."
            )
        if hidden_layers_depth > 0 and not hidden_layers_width:
            raise ValueError("hidden_layers_width is required when hidden_layers_depth > 0.")
        dims = [input_dim] + [hidden_layers_width] * hidden_layers_depth + [output_dim]
        self.dims = dims
        num_layers = len(dims) - 1
        self.is_nonlinear = nonlinearity is not None and num_layers > 1
        self.weights = torch.nn.ParameterList()
        alphas = []
        for layer, (fan_in, fan_out) in enumerate(zip(dims, dims[1:], strict=False)):
            weight = torch.empty(fan_in, fan_out, dtype=dtype)
            torch.nn.init.uniform_(weight, -math.sqrt(3), math.sqrt(3), generator=generator)
            self.weights.append(torch.nn.Parameter(weight))
            if forward_weight_init:
                gain = 1.0 if nonlinearity is None or layer == 0 else math.sqrt(2)
                alphas.append(gain / math.sqrt(fan_in))
            else:
                last = layer == num_layers - 1
                gain = 1.0 if nonlinearity is None or last else math.sqrt(2)
                alphas.append(gain / math.sqrt(fan_out))
        self.register_buffer("alphas", torch.tensor(alphas, dtype=dtype), persistent=False)
        self.activation = NONLINEARITIES[nonlinearity]()

    @property
    def output_dim(self) -> int:
        """Size of the last dimension of the output."""
        return self.dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to (..., input_dim) features; returns (..., output_dim)."""
        last = len(self.weights) - 1
        for layer, weight in enumerate(self.weights):
            x = x @ (weight * self.alphas[layer])
            if layer != last:
                x = self.activation(x)
        return x
