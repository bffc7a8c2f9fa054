"""Per-type affine map of per-atom energies, in float64."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


def per_type_values(
    values: float | Mapping[str, float] | None, type_names: Sequence[str], default: float
) -> torch.Tensor:
    """Expand a scalar, a ``{type_name: value}`` mapping or None to a (T,) float64 tensor."""
    if values is None:
        values = default
    if isinstance(values, Mapping):
        missing = set(type_names) - set(values)
        extra = set(values) - set(type_names)
        if missing or extra:
            raise ValueError(
                f"Per-type values must name exactly the model's types {list(type_names)}; "
                f"missing {sorted(missing)}, unknown {sorted(extra)}."
            )
        return torch.tensor([float(values[name]) for name in type_names], dtype=torch.float64)
    return torch.full((len(type_names),), float(values), dtype=torch.float64)


class PerTypeScaleShift(torch.nn.Module):
    r"""Per-atom energy :math:`E_i = s_{T_i} \tilde E_i + b_{T_i}`, computed in float64.

    Parameters
    ----------
    type_names : sequence of str
        Model type names (T of them).
    scales, shifts : float, mapping or None
        One value for all types, or one per type name. None means 1 (scales) or 0 (shifts).
    scales_trainable, shifts_trainable : bool
        Whether they are parameters (float64) or fixed buffers.
    """

    def __init__(
        self,
        type_names: Sequence[str],
        scales: float | Mapping[str, float] | None = None,
        shifts: float | Mapping[str, float] | None = None,
        scales_trainable: bool = False,
        shifts_trainable: bool = False,
    ):
        super().__init__()
        scales = per_type_values(scales, type_names, 1.0)
        shifts = per_type_values(shifts, type_names, 0.0)
        if scales_trainable:
            self.scales = torch.nn.Parameter(scales)
        else:
            self.register_buffer("scales", scales)
        if shifts_trainable:
            self.shifts = torch.nn.Parameter(shifts)
        else:
            self.register_buffer("shifts", shifts)

    def forward(self, energies: torch.Tensor, atom_types: torch.Tensor) -> torch.Tensor:
        """Map (N,) energies of atoms with (N,) types to (N,) float64 energies (eV)."""
        return energies.to(torch.float64) * self.scales[atom_types] + self.shifts[atom_types]
