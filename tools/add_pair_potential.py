#!/usr/bin/env python
"""Add the ZBL pair term to a trained model: same weights, repulsion at close contact.

The term has no weights (``pair_potential`` in the model config), so the model's energies are
unchanged wherever no two atoms are closer than ``--r-max``; below, the ZBL screened nuclear
repulsion (:mod:`allegro_ase.nn.pair_potential`) takes over. How the EMT zoo models got their
close-contact repulsion (allegro-emt-metals v3, nequip-emt-metals v2)::

    git show 6bee318:pretrained/allegro-emt-metals/model.pt > data/allegro-emt-metals-v2.pt
    python tools/add_pair_potential.py data/allegro-emt-metals-v2.pt \\
        pretrained/allegro-emt-metals/model.pt --r-max 2.0
"""

from __future__ import annotations

import argparse

from allegro_ase.io import load_model, save_model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model file of this package (.pt)")
    parser.add_argument("out", help="the new model file")
    parser.add_argument("--r-max", type=float, required=True, help="cutoff of the ZBL term, Å")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    if model.config.pair_potential is not None:
        raise SystemExit(f"{args.model} already has a pair term: {model.config.pair_potential}")
    config = model.config.replace(pair_potential={"kind": "zbl", "r_max": args.r_max})
    new = type(model)(config)
    new.load_state_dict(model.state_dict(), strict=True)
    save_model(new, args.out)
    print(f"{args.out}: {type(model).__name__} with ZBL below {args.r_max} Å")


if __name__ == "__main__":
    main()
