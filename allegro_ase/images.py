"""Many structures stepped together, one batched model call per step: NEB and screening relaxations.

ASE's workflows ask each ``Atoms`` for its forces in turn. :class:`BatchedImages` gives every
image its own small calculator; the first image asked evaluates every image whose geometry
changed since its last results in one :meth:`~allegro_ase.AllegroCalculator.calculate_batch`
call, and the others then find their results ready. Unchanged images (NEB end points) are not
recomputed.

>>> from ase.mep import NEB
>>> neb = NEB(images, climb=True)
>>> BatchedImages(calc, images)            # attaches image.calc to every image
>>> FIRE(neb).run(fmax=0.05)               # one model call per optimiser step

:func:`relax_many` relaxes a list of structures in lockstep (each with its own optimiser),
evaluating all unconverged ones in one call per step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from .calculator import AllegroCalculator


class BatchedImages:
    """One calculator per image; each call evaluates every changed image in one batch.

    Parameters
    ----------
    calculator : AllegroCalculator
        Its model, device, dtype and memory budget are used (batches that would not fit
        are split by the calculator).
    images : sequence of ase.Atoms
        Each image's ``calc`` is set to its member calculator (``image.calc``); the images
        are otherwise only read.
    properties : sequence of str
        Properties every evaluation must provide (add ``"stress"`` for cell relaxations).
    """

    def __init__(
        self,
        calculator: AllegroCalculator,
        images: Sequence[Atoms],
        properties: Sequence[str] = ("energy", "forces"),
    ):
        if not isinstance(calculator, AllegroCalculator):
            raise TypeError(f"BatchedImages needs an AllegroCalculator, got {type(calculator)}.")
        self.calculator = calculator
        self.images = list(images)
        self.properties = tuple(properties)
        self.members = [ImageCalculator(self, k) for k in range(len(self.images))]
        self.num_calls = 0  # batched model calls made (for logs and tests)
        for image, member in zip(self.images, self.members, strict=True):
            image.calc = member

    def evaluate_changed(self, properties: Sequence[str] = ()) -> None:
        """Evaluate, in one batch, every image without current results."""
        wanted = tuple(dict.fromkeys((*self.properties, *properties)))
        changed = [
            k
            for k, (image, member) in enumerate(zip(self.images, self.members, strict=True))
            if member.atoms is None or member.check_state(image)
        ]
        if not changed:
            return
        batch = [self.images[k] for k in changed]
        results = self.calculator.calculate_batch(batch, wanted)
        self.num_calls += 1
        for k, result in zip(changed, results, strict=True):
            member = self.members[k]
            member.atoms = self.images[k].copy()
            member.results = result


class ImageCalculator(Calculator):
    """The calculator of one image of a :class:`BatchedImages` group."""

    implemented_properties = AllegroCalculator.implemented_properties

    def __init__(self, group: BatchedImages, index: int):
        super().__init__()
        self.group = group
        self.index = index

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: tuple[str, ...] = ("energy",),
        system_changes: list[str] = all_changes,
    ) -> None:
        """Evaluate this image together with every other changed image of the group."""
        if atoms is not None and atoms is not self.group.images[self.index]:
            raise ValueError(
                "This calculator belongs to one image of a BatchedImages group; attach a new "
                "group (BatchedImages(calc, images)) to evaluate other Atoms."
            )
        self.group.evaluate_changed(properties)


def relax_many(
    structures: Sequence[Atoms],
    calculator: AllegroCalculator,
    fmax: float = 0.05,
    steps: int = 500,
    relax_cell: bool = False,
    optimizer: type = FIRE,
    logfile: str | None = None,
) -> list[bool]:
    """Relax structures in place, together: one batched model call per optimiser step.

    Parameters
    ----------
    structures : sequence of ase.Atoms
        Relaxed in place (positions, and the cell with ``relax_cell``); each gets a
        member calculator of a :class:`BatchedImages` group.
    calculator : AllegroCalculator
        The model.
    fmax : float
        Convergence: largest force (eV/Å; for the cell, the filter's generalised force).
    steps : int
        Most optimiser steps per structure.
    relax_cell : bool
        Relax the cell too, through :class:`ase.filters.FrechetCellFilter`.
    optimizer : type
        An ASE optimiser class (FIRE, BFGS, LBFGS, ...); one instance per structure.
    logfile : str or None
        Passed to each optimiser (None: silent; ``"-"``: standard output).

    Returns
    -------
    list of bool
        Whether each structure converged within ``steps``.

    Notes
    -----
    The cell filter's matrix logarithm (scipy) draws from numpy's global random generator;
    its state is restored afterwards, so the caller's random stream is not changed.
    """
    with _numpy_global_random_state_kept():
        return _relax_in_lockstep(
            structures, calculator, fmax, steps, relax_cell, optimizer, logfile
        )


@contextmanager
def _numpy_global_random_state_kept() -> Iterator[None]:
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _relax_in_lockstep(structures, calculator, fmax, steps, relax_cell, optimizer, logfile):
    properties = ("energy", "forces", "stress") if relax_cell else ("energy", "forces")
    group = BatchedImages(calculator, structures, properties)
    optimizables = [FrechetCellFilter(a) if relax_cell else a for a in structures]
    optimizers = [optimizer(item, logfile=logfile) for item in optimizables]
    for opt in optimizers:
        opt.fmax = fmax
    converged = [False] * len(structures)
    active = list(range(len(structures)))
    for step in range(steps + 1):
        group.evaluate_changed()
        still_active = []
        for k in active:
            if optimizers[k].converged():
                converged[k] = True
            elif step < steps:
                optimizers[k].step()
                optimizers[k].nsteps += 1
                still_active.append(k)
        active = still_active
        if not active:
            break
    return converged
