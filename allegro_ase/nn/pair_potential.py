r"""Ziegler-Biersack-Littmark (ZBL) screened nuclear repulsion, as a per-atom energy term.

.. math::
    E_{ij} = \frac{k_e Z_i Z_j}{r_{ij}} \,\phi(x)\, u(r_{ij} / r_c), \qquad
    x = \frac{(Z_i^{0.23} + Z_j^{0.23})\, r_{ij}}{0.46850\ \text{Å}},

    \phi(x) = 0.18175 e^{-3.19980 x} + 0.50986 e^{-0.94229 x}
            + 0.28022 e^{-0.40290 x} + 0.02817 e^{-0.20162 x}

(the universal screening function, as in LAMMPS ``pair_style zbl``), with
:math:`k_e = e^2 / 4\pi\varepsilon_0` = 14.399645 eV Å (``metal`` units) or 332.06371 kcal/mol Å
(``real``), and the polynomial envelope u of the cutoff :math:`r_c`: by default the cutoff of
the edge's type pair, as in the reference framework; with ``r_max`` given, the shorter of the two.
Half of :math:`E_{ij}` goes to atom i and half to atom j (each directed edge carries half).

With the edge-type cutoff (several Å) the term is still eV-sized per pair at the
nearest-neighbour distances of metals (Cu-Cu 1.3 eV at 2.5 Å for r_c = 6 Å), which the network
must then cancel; a short ``r_max`` (say 2 Å, below the distances in the training data) confines
it to close contact, where it dominates.

It is the reference framework's ``nequip.nn.pair_potential.ZBL`` term, added to the per-atom
energies after the per-type scale and shift, computed in float64 but for the envelope, which
is rounded to the model dtype as the reference rounds it. (The reference raises the atomic
numbers to 0.23 in the model dtype; in float32 that power varies by an ulp or two with the
vectorisation of the call, about 2e-7 of the pair energy, so float32 models agree with it to
that relative precision at close contact, 5e-5 eV of 300 eV at 0.8 Å.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase.data import atomic_numbers

from .radial import PolynomialCutoff

COULOMB_CONSTANT = {"metal": 14.399645, "real": 332.06371}  # e^2 / (4 pi eps0), energy * Å
_SCREENING = ((0.02817, -0.20162), (0.28022, -0.40290), (0.50986, -0.94229), (0.18175, -3.19980))
_SCREENING_LENGTH = 0.46850  # Å
_Z_EXPONENT = 0.23


def species_atomic_numbers(chemical_species: Sequence[str]) -> list[int]:
    """Atomic numbers of chemical symbols; a clear error for anything that is not an element."""
    unknown = [symbol for symbol in chemical_species if atomic_numbers.get(symbol, 0) < 1]
    if unknown:
        raise ValueError(
            f"The ZBL pair potential needs the chemical element of every type; {unknown} are "
            "not chemical symbols. Give chemical_species (one symbol per type name)."
        )
    return [atomic_numbers[symbol] for symbol in chemical_species]


class ZBL(torch.nn.Module):
    """ZBL repulsion of every edge, summed onto its centre atom (half per directed edge).

    Parameters
    ----------
    chemical_species : sequence of str
        Chemical symbol of each atom type, in type order.
    units : str
        ``"metal"`` (eV, Å) or ``"real"`` (kcal/mol, Å).
    polynomial_cutoff_p : float
        Exponent of the envelope at the edge-type cutoff (reference default 6, independent of
        the radial basis' exponent).
    dtype : torch.dtype
        The model dtype (see the module docstring for what is rounded to it).
    r_max : float or None
        Cutoff of the term (Å): the envelope uses the shorter of it and the edge-type cutoff.
        None (default): the edge-type cutoff alone, as in the reference framework.
    """

    def __init__(
        self,
        chemical_species: Sequence[str],
        units: str = "metal",
        polynomial_cutoff_p: float = 6.0,
        dtype: torch.dtype = torch.float64,
        r_max: float | None = None,
    ):
        super().__init__()
        if r_max is not None and not float(r_max) > 0:
            raise ValueError(f"The ZBL cutoff r_max must be positive (Å) or None, got {r_max}.")
        self.r_max = None if r_max is None else float(r_max)
        if units not in COULOMB_CONSTANT:
            raise ValueError(
                f"ZBL units must be one of {list(COULOMB_CONSTANT)} (LAMMPS units), got {units!r}."
            )
        self.units = units
        numbers = torch.tensor(species_atomic_numbers(chemical_species), dtype=dtype)
        self.register_buffer("atomic_numbers", numbers, persistent=False)
        self.register_buffer(
            "z_power", numbers.to(torch.float64).pow(_Z_EXPONENT), persistent=False
        )
        self.half_coulomb = 0.5 * COULOMB_CONSTANT[units]
        self.cutoff = PolynomialCutoff(polynomial_cutoff_p)
        self.model_dtype = dtype

    def forward(
        self,
        length: torch.Tensor,
        x: torch.Tensor,
        edge_types: torch.Tensor,
        center: torch.Tensor,
        num_atoms: int,
    ) -> torch.Tensor:
        """Per-atom ZBL energies.

        Parameters
        ----------
        length : torch.Tensor
            (E,) float64 edge lengths r_ij, Å.
        x : torch.Tensor
            (E,) float64 normalised lengths r_ij / r_c(T_i, T_j); with ``r_max`` set, the
            envelope takes the larger of this and r_ij / r_max.
        edge_types : torch.Tensor
            (2, E) int64 types of centre and neighbour.
        center : torch.Tensor
            (E,) int64 centre atom of each edge.
        num_atoms : int
            Number of atoms N.

        Returns
        -------
        torch.Tensor
            (N,) float64 energies, in the energy unit of ``units``.
        """
        z_sum = self.z_power[edge_types[0]] + self.z_power[edge_types[1]]
        z_product = self.atomic_numbers[edge_types[0]] * self.atomic_numbers[edge_types[1]]
        screening_x = z_sum * length / _SCREENING_LENGTH
        phi = sum(c * torch.exp(d * screening_x) for c, d in _SCREENING)
        if self.r_max is not None:  # the shorter cutoff: the larger normalised length
            x = torch.maximum(x, length / self.r_max)
        envelope = self.cutoff(x).to(self.model_dtype).to(torch.float64)
        edge_energy = self.half_coulomb * (z_product.to(torch.float64) / length) * phi * envelope
        energy = torch.zeros(num_atoms, dtype=torch.float64, device=length.device)
        return energy.index_add(0, center, edge_energy)
