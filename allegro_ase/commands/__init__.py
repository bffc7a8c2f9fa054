"""The subcommands of ``allegro-ase`` (:mod:`allegro_ase.cli`), one module each.

Each module has an ``add_*`` function that adds its parser to the shared subcommands and sets
``run``, a function ``(args) -> exit status``. Modules import only the standard library at the
top; torch, e3nn and ASE's calculators are imported inside the run functions, so that
``allegro-ase --help`` answers at once.
"""
