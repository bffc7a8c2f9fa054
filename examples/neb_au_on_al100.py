"""Barrier of an Au adatom hopping between hollow sites on Al(100): model against EMT.

The ASE tutorial system (a 2x2x3 Al(100) slab, Au in the hollow site). EMT, the method the
``allegro-emt-metals`` model was trained on, gives about 0.37 eV; the model should agree
within a few tens of meV::

    python examples/neb_au_on_al100.py --plot neb.png
    python examples/neb_au_on_al100.py --full --plot neb.png   # 7 images, climbing image
"""

from __future__ import annotations

import argparse
import copy

from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import BFGS, QuasiNewton

from allegro_ase import AllegroCalculator


def endpoints() -> tuple:
    """Unrelaxed initial and final states: Au in two neighbouring hollow sites."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))  # fix layers 2 and 3
    final = slab.copy()
    final[-1].x += final.get_cell()[0, 0] / 2
    return slab, final


def neb_images(
    initial, final, make_calc, n_images: int = 3, fmax: float = 0.05, climb: bool = False
) -> list:
    """Converged NEB band from ``initial`` to ``final``, both relaxed first (in place).

    ``make_calc()`` gives one calculator per image. Returns the ``n_images + 2`` images, each
    with its calculator holding energy and forces.
    """
    for atoms in (initial, final):
        atoms.calc = make_calc()
        QuasiNewton(atoms, logfile=None).run(fmax=fmax)
    images = [initial] + [initial.copy() for _ in range(n_images)] + [final]
    for image in images[1:-1]:
        image.calc = make_calc()
    neb = NEB(images, method="improvedtangent", climb=climb)
    neb.interpolate()
    BFGS(neb, logfile=None).run(fmax=fmax, steps=300)
    return images


def band_barrier(images) -> float:
    """Barrier (eV) of a band: highest image energy minus the initial one."""
    energies = [image.get_potential_energy() for image in images]
    return max(energies) - energies[0]


def neb_barrier(
    initial, final, make_calc, n_images: int = 3, fmax: float = 0.05, climb: bool = False
) -> float:
    """NEB barrier (eV) from ``initial`` to ``final``, both relaxed first (in place).

    ``make_calc()`` gives one calculator per image.
    """
    return band_barrier(neb_images(initial, final, make_calc, n_images, fmax, climb))


def barrier(make_calc, n_images: int = 3, fmax: float = 0.05) -> float:
    """Barrier (eV) of the Au hop; ``make_calc()`` gives one calculator per image."""
    return neb_barrier(*endpoints(), make_calc, n_images, fmax)


def main(argv: list[str] | None = None) -> dict:
    """Print and return the EMT and model barriers (eV)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="allegro-emt-metals", help="name of a zoo model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=3, help="intermediate images")
    parser.add_argument("--full", action="store_true", help="7 images, climbing image, fmax 0.02")
    parser.add_argument("--plot", metavar="PATH", help="write both bands to PATH")
    args = parser.parse_args(argv)
    options = (
        {"n_images": 7, "fmax": 0.02, "climb": True} if args.full else {"n_images": args.images}
    )
    shared = AllegroCalculator.from_pretrained(args.model, device=args.device)
    bands = {
        "EMT": neb_images(*endpoints(), EMT, **options),
        args.model: neb_images(
            *endpoints(), lambda: copy.copy(shared), **options
        ),  # shared weights
    }
    barriers = {name: band_barrier(images) for name, images in bands.items()}
    for name, value in barriers.items():
        print(f"{name:22s} barrier {value:.3f} eV")
    print(f"difference {1000 * (barriers[args.model] - barriers['EMT']):+.1f} meV")
    if args.plot:
        from allegro_ase.plots import neb_band

        print(f"plot: {neb_band(bands, args.plot)}")
    return barriers


if __name__ == "__main__":
    main()
