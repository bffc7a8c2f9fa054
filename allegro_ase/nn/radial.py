"""Radial basis of normalised edge lengths: Bessel functions and the polynomial envelope."""

from __future__ import annotations

import torch


class PolynomialCutoff(torch.nn.Module):
    r"""Smooth envelope that is exactly zero, with zero derivatives, at and beyond x = 1.

    .. math::
        u(x) = \left[1 - \tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1}
               - \tfrac{p(p+1)}{2} x^{p+2}\right] \Theta(1 - x)

    (Klicpera et al., DimeNet, 2020). Its first p - 1 derivatives vanish at x = 1.

    Parameters
    ----------
    p : float
        Exponent; at least 2. The reference default is 6.
    """

    def __init__(self, p: float = 6.0):
        super().__init__()
        if p < 2:
            raise ValueError(f"polynomial_cutoff_p must be >= 2, got {p}.")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate u(x) elementwise; ``x`` is a length divided by its cutoff (any shape)."""
        p = self.p
        out = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
            + p * (p + 2.0) * torch.pow(x, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
        )
        return out * (x < 1.0)


class BesselBasis(torch.nn.Module):
    r"""Bessel radial basis of a normalised length :math:`x = r / r_c`.

    .. math:: b_n(x) = \frac{\sin(n \pi x)}{\pi x}, \qquad n = 1 \dots N

    The frequencies :math:`n` are kept in float64 and may be trainable.

    Parameters
    ----------
    num_bessels : int
        Number N of basis functions.
    trainable : bool
        Whether the frequencies are parameters.
    """

    def __init__(self, num_bessels: int = 8, trainable: bool = False):
        super().__init__()
        frequencies = torch.linspace(1.0, num_bessels, num_bessels, dtype=torch.float64)
        frequencies = frequencies.unsqueeze(0)
        if trainable:
            self.frequencies = torch.nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)
        self.num_bessels = num_bessels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (E, 1) normalised lengths to (E, N) basis values (dtype of the frequencies)."""
        return torch.sinc(x * self.frequencies) * self.frequencies
