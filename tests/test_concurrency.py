"""Calculators used from several threads at once give the serial numbers."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from conftest import GEOMETRIES, calc_for, make_model, make_nequip_model


def evaluate(calc, structures) -> list[tuple[float, np.ndarray]]:
    results = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = calc
        results.append((atoms.get_potential_energy(), atoms.get_forces().copy()))
    return results


def structures(seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(3):
        for make in GEOMETRIES.values():
            atoms = make()
            atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
            out.append(atoms)
    return out


def assert_same(found, expected):
    for (e1, f1), (e2, f2) in zip(found, expected, strict=True):
        assert e1 == e2
        np.testing.assert_array_equal(f1, f2)


def test_two_calculators_in_two_threads():
    calcs = [calc_for(make_model().requires_grad_(False)),
             calc_for(make_nequip_model().requires_grad_(False))]  # fmt: skip
    work = [structures(0), structures(1)]
    expected = [evaluate(copy.copy(c), w) for c, w in zip(calcs, work, strict=True)]
    with ThreadPoolExecutor(2) as pool:
        found = list(pool.map(evaluate, calcs, work))
    for f, e in zip(found, expected, strict=True):
        assert_same(f, e)


def test_copies_sharing_one_model_in_threads():
    calc = calc_for(make_model().requires_grad_(False))
    work = [structures(seed) for seed in range(4)]
    expected = [evaluate(copy.copy(calc), w) for w in work]
    copies = [copy.copy(calc) for _ in work]
    assert all(c.model is calc.model for c in copies)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(evaluate, copies, work))
    for f, e in zip(found, expected, strict=True):
        assert_same(f, e)
