"""Read a model's architecture from the module tree pickled in a ``.nequip.zip``.

A packaged model is the reference's module tree itself: a ``GraphModel`` around
``ForceStressOutput`` around a ``SequentialGraphNetwork`` of named modules, read here as inert
:class:`~allegro_ase.nequip_files.unpickler.Stub` records of their attributes and tensors. From
them :func:`builder_kwargs_from_tree` recovers the reference builder's arguments (as
``FullNequIPGNNModel`` or ``AllegroModel`` would take them), so a model made through wrappers
(fine-tuning, modifiers) is rebuilt like any other. Every top-level module must be one this
package rebuilds; any other is refused by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from ase.data import chemical_symbols

from ..nn.pair_potential import COULOMB_CONSTANT
from .builders import ZBL_TARGET
from .unpickler import Stub

NEQUIP_MODULES = {
    "type_embed", "spharm", "edge_norm", "bessel_encode", "factor", "per_atom_energy_readout",
    "per_type_energy_scale_shift", "pair_potential", "total_energy_sum",
}  # fmt: skip
ALLEGRO_MODULES = {
    "edge_norm", "radial_chemical_embed", "scalar_embed_mlp", "tensor_embed", "allegro",
    "edge_readout", "edge_eng_sum", "per_type_energy_scale_shift", "cutoff", "pair_potential",
    "total_energy_sum",
}  # fmt: skip
_MLP_NONLINEARITIES = {"SiLU": "silu", "Mish": "mish", "GELU": "gelu", "Tanh": "tanh"}
_GATE_ACTIVATIONS = {"silu": "silu", "tanh": "tanh", "abs": "abs", "ShiftedSoftPlus": "ssp"}


class TreeError(ValueError):
    """A module tree that is not one of the architectures rebuilt here."""


def child(module: Stub, path: str) -> Stub:
    """Submodule at a dotted path."""
    for name in path.split("."):
        try:
            module = module.state["_modules"][name]
        except (KeyError, TypeError, AttributeError) as error:
            raise TreeError(f"the packaged model has no module {path!r}") from error
    return module


def attribute(module: Stub, name: str) -> Any:
    """Return a pickled attribute of a module (a buffer, parameter or plain attribute)."""
    state = module.state
    for group in ("_buffers", "_parameters"):
        if name in (state.get(group) or {}):
            return state[group][name]
    if name not in state:
        raise TreeError(f"{module.module}.{module.name} has no attribute {name!r}")
    return state[name]


def irreps_text(irreps: Stub) -> str:
    """Return an e3nn ``Irreps`` record as its string, e.g. ``"8x0e+4x1o"``."""
    terms = []
    for mul_ir in irreps.args[0]:
        mul, irrep = mul_ir.args[0]
        order, parity = irrep.args[0]
        terms.append(f"{mul}x{order}{'e' if parity == 1 else 'o'}")
    return "+".join(terms)


def class_name(module: Stub) -> str:
    """``module.ClassName`` of a record."""
    return f"{module.module}.{module.name}"


def mlp_kwargs(function: Stub, prefix: str) -> dict[str, Any]:
    """Depth, width and nonlinearity of a ``ScalarMLPFunction`` record, under ``prefix``."""
    dims = list(attribute(function, "dims"))
    depth = len(dims) - 2
    values: dict[str, Any] = {f"{prefix}_depth": depth}
    if depth:
        values[f"{prefix}_width"] = dims[1]
    nonlinear = bool(attribute(function, "is_nonlinear"))
    activation = None
    if nonlinear:
        layers = child(function, "mlp").state["_modules"].values()
        found = {layer.name for layer in layers if layer.name != "ScalarLinearLayer"}
        if len(found) != 1 or next(iter(found)) not in _MLP_NONLINEARITIES:
            raise TreeError(f"an MLP with the activations {sorted(found)}")
        activation = _MLP_NONLINEARITIES[found.pop()]
    values[prefix.replace("hidden_layers", "nonlinearity")] = activation
    return values


def _energy_kwargs(func: Stub) -> dict[str, Any]:
    """Per-type scales/shifts and the pair term; shared by both architectures."""
    scale_shift = child(func, "per_type_energy_scale_shift")
    names = list(attribute(scale_shift, "type_names"))
    values: dict[str, Any] = {}
    for what in ("scales", "shifts"):
        if not attribute(scale_shift, f"has_{what}"):
            continue
        tensor = attribute(scale_shift, what).reshape(-1).to(torch.float64)
        per_type = tensor.tolist() * (len(names) if tensor.numel() == 1 else 1)
        values[f"per_type_energy_{what}"] = dict(zip(names, per_type, strict=True))
        values[f"per_type_energy_{what}_trainable"] = bool(
            attribute(scale_shift, f"{what}_trainable")
        )
    if "pair_potential" in func.state["_modules"]:
        values["pair_potential"] = _zbl_kwargs(child(func, "pair_potential"), func)
    return values


def _edge_envelope_p(func: Stub) -> float:
    """Exponent of the model's edge envelope, which ZBL used before nequip 0.17."""
    for path in (
        "bessel_encode.cutoff",
        "radial_chemical_embed.bessel_encode.cutoff",
        "cutoff.cutoff",
    ):
        try:
            return float(attribute(child(func, path), "p"))
        except TreeError:
            continue
    raise TreeError("a ZBL term without an envelope")


def _zbl_kwargs(module: Stub, func: Stub) -> dict[str, Any]:
    if class_name(module) != ZBL_TARGET:
        raise TreeError(f"the pair potential {class_name(module)} (only {ZBL_TARGET})")
    numbers = attribute(module, "atomic_numbers").reshape(-1).round().long().tolist()
    half_coulomb = float(attribute(module, "_qqr2exesquare"))
    units = [u for u, k in COULOMB_CONSTANT.items() if math.isclose(0.5 * k, half_coulomb)]
    if not units:
        raise TreeError(f"a ZBL term with Coulomb constant {2 * half_coulomb} (not metal/real)")
    return {
        "_target_": ZBL_TARGET,
        "units": units[0],
        "chemical_species": [chemical_symbols[z] for z in numbers],
        "polynomial_cutoff_p": (
            float(attribute(child(module, "cutoff"), "p"))
            if "cutoff" in module.state["_modules"]
            else _edge_envelope_p(func)
        ),
    }


def _avg_num_neighbors(norm: Stub, type_names: list[str]) -> float | dict[str, float]:
    averages = (1.0 / attribute(norm, "norm_const").reshape(-1).to(torch.float64) ** 2).tolist()
    return averages[0] if len(averages) == 1 else dict(zip(type_names, averages, strict=True))


def _allegro_avg_num_neighbors(allegro: Stub, type_names: list[str]) -> float | dict[str, float]:
    """From the environment sum's normaliser; allegro < 0.8 kept one in the tensor products."""
    if "avg_num_neighbors_norm" in allegro.state["_modules"]:
        return _avg_num_neighbors(child(allegro, "avg_num_neighbors_norm"), type_names)
    scatter_factor = attribute(child(allegro, "tps.0"), "scatter_factor")
    if scatter_factor is None:
        raise TreeError("an Allegro module without an environment normaliser")
    return 1.0 / float(scatter_factor) ** 2


def _gate_activations(paths: list, default: dict[str, str]) -> dict[str, str]:
    activations = dict(default)
    for _, (_, parity), normalized in paths:
        function = normalized.state["f"]
        name = getattr(function, "name", type(function).__name__)
        if name not in _GATE_ACTIVATIONS:
            raise TreeError(f"the gate activation {name!r}")
        activations["e" if parity == 1 else "o"] = _GATE_ACTIVATIONS[name]
    return activations


def nequip_kwargs(func: Stub, type_names: list[str]) -> dict[str, Any]:
    """``FullNequIPGNNModel`` arguments of a NequIP ``SequentialGraphNetwork`` record."""
    embed = child(func, "type_embed")
    if embed.state.get("do_categorical_graph_field_embed"):  # (absent before nequip 0.14)
        raise TreeError("a categorical graph-field embedding")
    bessel = child(func, "bessel_encode")
    layers = sorted(
        (name for name in func.state["_modules"] if name.endswith("_convnet")),
        key=lambda name: int(name[len("layer") : -len("_convnet")]),
    )
    values: dict[str, Any] = {
        "_target_": "nequip.model.FullNequIPGNNModel",
        "type_embed_num_features": int(attribute(child(embed, "embed_module"), "embedding_dim")),
        "irreps_edge_sh": irreps_text(attribute(child(func, "spharm"), "irreps_edge_sh")),
        "num_bessels": int(attribute(bessel, "num_bessels")),
        "bessel_trainable": bool(attribute(bessel, "trainable")),
        "polynomial_cutoff_p": float(attribute(child(bessel, "cutoff"), "p")),
        "feature_irreps_hidden": [],
        "radial_mlp_depth": [],
        "radial_mlp_width": [],
    }
    use_sc, resnet = [], []
    scalars, gates = {"e": "silu", "o": "tanh"}, {"e": "silu", "o": "tanh"}
    for name in layers:
        layer, conv = child(func, name), child(func, f"{name}.conv")
        nonlinearity = child(layer, "equivariant_nonlin")
        if nonlinearity.name != "Gate":
            raise TreeError(f"the layer nonlinearity {class_name(nonlinearity)} (only the gate)")
        scalars = _gate_activations(attribute(child(nonlinearity, "act_scalars"), "paths"), scalars)
        gates = _gate_activations(attribute(child(nonlinearity, "act_gates"), "paths"), gates)
        values["feature_irreps_hidden"].append(
            irreps_text(attribute(layer, "feature_irreps_hidden"))
        )
        radial = mlp_kwargs(child(conv, "edge_mlp"), "radial_mlp")
        values["radial_mlp_depth"].append(radial["radial_mlp_depth"])
        values["radial_mlp_width"].append(radial.get("radial_mlp_width", 128))
        use_sc.append(bool(attribute(conv, "use_sc")))
        resnet.append(bool(attribute(layer, "resnet")))
    values["learnable_shift"] = use_sc[0] or resnet[0]
    values["convnet_sc"] = any(use_sc)
    values["convnet_resnet"] = any(resnet)
    values["convnet_nonlinearity_scalars"], values["convnet_nonlinearity_gates"] = scalars, gates
    conv = child(func, f"{layers[0]}.conv")
    if "avg_num_neighbors_norm" in conv.state["_modules"]:
        averages = _avg_num_neighbors(child(conv, "avg_num_neighbors_norm"), type_names)
    else:  # nequip < 0.14 kept one factor, None for no normalisation
        factor = conv.state.get("scatter_norm_factor")
        averages = 1.0 if factor is None else 1.0 / float(factor) ** 2
    values["avg_num_neighbors"] = averages
    readout = mlp_kwargs(
        child(func, "per_atom_energy_readout.mlp_module"), "readout_mlp_hidden_layers"
    )
    return {**values, **readout}


def _forward_normalize(func: Stub) -> bool:
    """Whether Allegro's linear layers were normalised by fan-in (the default) or fan-out."""
    stack = [func]
    while stack:
        module = stack.pop()
        if module.name == "ScalarMLPFunction":
            first = child(module, "mlp").state["_modules"]["0"]
            fan_in, fan_out = (
                int(attribute(first, "in_features")),
                int(attribute(first, "out_features")),
            )
            alpha = float(attribute(first, "alpha"))
            if fan_in != fan_out and math.isclose(alpha, fan_out**-0.5, rel_tol=1e-6):
                return False
            if fan_in != fan_out and math.isclose(alpha, fan_in**-0.5, rel_tol=1e-6):
                return True
        stack.extend(
            m for m in (module.state.get("_modules") or {}).values() if isinstance(m, Stub)
        )
    return True


def _has_both_parities(irreps: str) -> bool:
    """Whether some term of an irreps string has the parity opposite to (-1)^l."""
    for term in irreps.split("+"):
        order, parity = int(term.split("x")[-1][:-1]), term[-1]
        if parity != ("e" if order % 2 == 0 else "o"):
            return True
    return False


def allegro_kwargs(func: Stub, type_names: list[str]) -> dict[str, Any]:
    """``AllegroModel`` arguments of an Allegro ``SequentialGraphNetwork`` record."""
    embed = child(func, "radial_chemical_embed")
    if embed.name == "TwoBodySplineScalarEmbed":
        spline = child(embed, "spline")
        radial = {
            "_target_": "allegro.nn.TwoBodySplineScalarEmbed",
            "num_splines": int(attribute(spline, "num_splines")),
            "spline_span": int(attribute(spline, "spline_span")),
        }
        embed_dim = int(attribute(spline, "num_channels"))
    else:
        bessel = child(embed, "bessel_encode")
        radial = {
            "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
            "num_bessels": int(attribute(bessel, "num_bessels")),
            "bessel_trainable": bool(attribute(bessel, "trainable")),
            "polynomial_cutoff_p": float(attribute(child(bessel, "cutoff"), "p")),
        }
        embed_dim = 2 * int(attribute(child(embed, "type_embed.center_embed"), "embedding_dim"))
    allegro = child(func, "allegro")
    allowed = irreps_text(attribute(allegro, "tensor_track_allowed_irreps"))
    tensor_embed = child(func, "tensor_embed")
    weighter = child(tensor_embed, "_edge_weighter")
    values: dict[str, Any] = {
        "_target_": "allegro.model.AllegroModel",
        "l_max": int(attribute(child(tensor_embed, "sh"), "_lmax")),
        "parity": _has_both_parities(allowed),
        "radial_chemical_embed": radial,
        "radial_chemical_embed_dim": embed_dim,
        "num_layers": int(attribute(allegro, "num_layers")),
        "num_scalar_features": int(attribute(allegro, "num_scalar_features")),
        "num_tensor_features": int(attribute(allegro, "num_tensor_features")),
        "tp_path_channel_coupling": bool(
            attribute(child(allegro, "tps.0"), "path_channel_coupling")
        ),
        "weight_individual_irreps": bool(attribute(weighter, "weight_individual_irreps")),
        "avg_num_neighbors": _allegro_avg_num_neighbors(allegro, type_names),
        "forward_normalize": _forward_normalize(func),
    }
    mlps = {
        "scalar_embed_mlp_hidden_layers": "scalar_embed_mlp.mlp_module",
        "allegro_mlp_hidden_layers": "allegro.latents.0",
        "readout_mlp_hidden_layers": "edge_readout.mlp_module",
    }
    for prefix, path in mlps.items():
        values.update(mlp_kwargs(child(func, path), prefix))
    return values


ARCHITECTURE_OF_TREE: dict[str, tuple[set[str], Callable[[Stub, list[str]], dict[str, Any]]]] = {
    "allegro": (ALLEGRO_MODULES, allegro_kwargs),
    "nequip": (NEQUIP_MODULES, nequip_kwargs),
}


def builder_kwargs_from_tree(graph_model: Stub) -> dict[str, Any]:
    """Return the reference builder arguments of a packaged ``GraphModel`` record.

    Raises
    ------
    TreeError
        Naming the module (or option) that is not rebuilt here.
    """
    if class_name(graph_model) != "nequip.nn.graph_model.GraphModel":
        raise TreeError(f"the model class {class_name(graph_model)} (expected a GraphModel)")
    metadata = attribute(graph_model, "_metadata") or {}
    type_names = str(metadata.get("type_names", "")).split()
    func = child(graph_model, "model.func")
    names = set(func.state["_modules"])
    architecture = "allegro" if "allegro" in names else "nequip"
    known, read = ARCHITECTURE_OF_TREE[architecture]
    unknown = sorted(
        f"{name} ({class_name(child(func, name))})"
        for name in names - known
        if not (architecture == "nequip" and name.endswith("_convnet"))
    )
    if unknown:
        raise TreeError(
            f"the {architecture} model has modules this package does not rebuild: {unknown}"
        )
    values = {
        **read(func, type_names),
        **_energy_kwargs(func),
        "type_names": type_names,
        "r_max": float(metadata["r_max"]),
        "model_dtype": str(metadata.get("model_dtype", "float32")),
    }
    cutoffs = [float(v) for v in str(metadata.get("per_edge_type_cutoff", "")).split()]
    if cutoffs and any(v != values["r_max"] for v in cutoffs):
        size = len(type_names)
        values["per_edge_type_cutoff"] = {
            center: dict(zip(type_names, cutoffs[i * size : (i + 1) * size], strict=True))
            for i, center in enumerate(type_names)
        }
    return values
