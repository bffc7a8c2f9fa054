"""Pretrained models shipped with allegro-ase (data only; see ``allegro_ase.zoo`` and README.md)."""
