r"""NequIP's message-passing layer on e3nn irreps: interaction block, gate and residual update.

One layer maps node features :math:`h_i` to

.. math::
    m_i = \sum_{j \in N(i)} h'_j \otimes_{uvu} Y(\hat r_{ij}) \; W(e_{ij}),
    \qquad h'_j = \frac{\mathrm{Linear}_1(h_j)}{\sqrt{N_{avg}(T_j)}},

    h_i \leftarrow \mathrm{Gate}\big(\mathrm{Linear}_2(m_i) + \mathrm{SC}(h_i, z_i)\big)
    \; [+ h_i \text{ (residual)}],

with the spherical harmonics Y of the edge direction, tensor-product weights W from an MLP of
the radial basis e_ij, the species embedding z_i and the self-connection SC (a fully connected
tensor product). Messages flow from neighbour j = ``edge_index[1]`` to centre i =
``edge_index[0]``.

The e3nn modules are built exactly as the reference ``nequip`` 0.19 builds them, so that their
flat weight vectors have the same layout. Their constants (Clebsch-Gordan coefficients, output
masks) are recomputed at construction in the model dtype and are not saved in state dicts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch
from e3nn import o3
from e3nn.nn import Gate

from .mlp import ScalarMLP
from .uvu import UVUTensorProduct


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) - log 2, which vanishes at 0."""
    return torch.nn.functional.softplus(x) - math.log(2.0)


GATE_ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "abs": torch.abs,
    "ssp": shifted_softplus,
}


def path_exists(irreps_1: o3.Irreps, irreps_2: o3.Irreps, ir_out: o3.Irrep | str) -> bool:
    """Whether some irrep of ``irreps_1`` times some irrep of ``irreps_2`` contains ``ir_out``."""
    ir_out = o3.Irrep(ir_out)
    return any(ir_out in ir_1 * ir_2 for _, ir_1 in irreps_1 for _, ir_2 in irreps_2)


@contextlib.contextmanager
def building_e3nn(dtype: torch.dtype) -> Iterator[None]:
    """Build e3nn modules whose constants have ``dtype``; restore torch's global state after.

    e3nn computes Clebsch-Gordan constants in torch's default dtype and draws initial weights
    from the global generator. Inside this block the default dtype is ``dtype`` and the
    global RNG state is saved and restored; nothing outlives the block (not thread-safe).
    """
    previous = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


def adopt_e3nn(module: torch.nn.Module, generator: torch.Generator | None) -> torch.nn.Module:
    """Redraw ``module``'s weights (standard normal) from ``generator``; stop saving its constants.

    e3nn keeps Clebsch-Gordan coefficients as buffers of generated ``fx.GraphModule``s. They are
    recomputed on construction in the model's dtype, so they are left out of state dicts, as
    ``register_buffer(..., persistent=False)`` would. A deep copy or unpickling regenerates those
    GraphModules with ordinary buffers, so hooks on ``module`` (which copies keep) re-mark them
    before every save and load, and drop such constants from state dicts written before.
    """
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            )
    _mark_constants(module)
    module.register_state_dict_pre_hook(_mark_constants)
    module._register_load_state_dict_pre_hook(_skip_constants, with_module=True)
    return module


def _mark_constants(module: torch.nn.Module, *_) -> None:
    """Make every buffer of ``module`` and its submodules non-persistent."""
    for submodule in module.modules():
        submodule._non_persistent_buffers_set.update(submodule._buffers)


def _skip_constants(module: torch.nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """Before loading: mark the constants and remove any that an older file carries."""
    _mark_constants(module)
    for name, _ in module.named_buffers():
        state_dict.pop(prefix + name, None)


class InteractionBlock(torch.nn.Module):
    """Equivariant convolution: linear, uvu tensor product with radial weights, linear, SC.

    Parameters
    ----------
    irreps_in : e3nn.o3.Irreps
        Irreps of the input node features.
    irreps_attr : e3nn.o3.Irreps
        Irreps of the species embedding z (scalars).
    irreps_sh : e3nn.o3.Irreps
        Irreps of the edge spherical harmonics.
    irreps_out : e3nn.o3.Irreps
        Irreps of the output node features.
    num_radial : int
        Size of the radial basis e_ij.
    radial_mlp_depth, radial_mlp_width : int
        Hidden layers of the radial MLP (SiLU, no bias).
    use_sc : bool
        Add the self-connection SC(h_i, z_i).
    dtype : torch.dtype
        Weight dtype.
    generator : torch.Generator or None
        Source of the initial weights.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_attr: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_out: o3.Irreps,
        num_radial: int,
        radial_mlp_depth: int,
        radial_mlp_width: int,
        use_sc: bool,
        dtype: torch.dtype,
        generator: torch.Generator | None,
    ):
        super().__init__()
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        # one uvu path per (input irrep, harmonic, wanted output irrep), outputs sorted by irrep
        irreps_mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_sh) in enumerate(irreps_sh):
                for ir_out in ir_in * ir_sh:
                    if ir_out in irreps_out:
                        instructions.append((i, j, len(irreps_mid), "uvu", True))
                        irreps_mid.append((mul, ir_out))
        irreps_mid, permutation, _ = o3.Irreps(irreps_mid).sort()
        instructions = [(i, j, permutation[k], mode, w) for i, j, k, mode, w in instructions]
        with building_e3nn(dtype):
            self.linear_1 = o3.Linear(irreps_in, irreps_in)
            self.tp = UVUTensorProduct(
                o3.TensorProduct(
                    irreps_in, irreps_sh, irreps_mid, instructions,
                    shared_weights=False, internal_weights=False,
                ),
                dtype,
            )  # fmt: skip
            self.linear_2 = o3.Linear(irreps_mid.simplify(), irreps_out)
            self.sc = (
                o3.FullyConnectedTensorProduct(irreps_in, irreps_attr, irreps_out)
                if use_sc
                else None
            )
        for module in (self.linear_1, self.linear_2, self.sc):
            if module is not None:
                adopt_e3nn(module, generator)
        self.edge_mlp = ScalarMLP(
            num_radial, self.tp.weight_numel, radial_mlp_depth, radial_mlp_width,
            "silu", True, dtype, generator,
        )  # fmt: skip

    def forward(
        self,
        h: torch.Tensor,
        node_attrs: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
        edge_index: torch.Tensor,
        norm: torch.Tensor,
        pair_of_edge: torch.Tensor | None = None,
        inference: bool = False,
    ) -> torch.Tensor:
        """Update node features.

        Parameters
        ----------
        h : torch.Tensor
            (N, irreps_in.dim) node features.
        node_attrs : torch.Tensor
            (N, irreps_attr.dim) species embedding.
        sh : torch.Tensor
            (E, irreps_sh.dim) spherical harmonics of the edge directions.
        radial : torch.Tensor
            (E, num_radial) radial basis of the edge lengths, or (P, num_radial) of pairs of
            reverse edges with ``pair_of_edge``.
        edge_index : torch.Tensor
            (2, E) int64; row 0 centre (receiver), row 1 neighbour (sender).
        norm : torch.Tensor
            (N, 1) 1 / sqrt(avg_num_neighbors) of each atom's type.
        pair_of_edge : torch.Tensor or None
            (E,) int64 row of ``radial`` of each edge; None: row e is edge e.
        inference : bool
            No weight of the model needs gradients (see ``UVUTensorProduct.forward``).

        Returns
        -------
        torch.Tensor
            (N, irreps_out.dim) new node features.
        """
        center, neighbor = edge_index
        x = self.linear_1(h) * norm
        weights = self.edge_mlp(radial)
        if pair_of_edge is not None:
            weights = weights.index_select(0, pair_of_edge)
        summed = self.tp(x[neighbor], sh, weights, center, h.shape[0], inference)
        out = self.linear_2(summed)
        return out if self.sc is None else out + self.sc(h, node_attrs)


class ConvNetLayer(torch.nn.Module):
    """Interaction block, gate nonlinearity and optional residual update.

    The wanted irreps ``irreps_hidden`` are kept where some tensor-product path reaches them
    from ``irreps_in``; every kept l > 0 block gets its own gate scalar.

    Parameters
    ----------
    irreps_in, irreps_attr, irreps_sh : e3nn.o3.Irreps
        Input node features, species embedding and edge spherical harmonics.
    irreps_hidden : e3nn.o3.Irreps
        Wanted output node features.
    nonlinearity_scalars, nonlinearity_gates : mapping
        Activation names for even (``"e"``) and odd (``"o"``) scalars and gates.
    resnet : bool
        Add the input to the output when their irreps agree.
    **interaction
        ``num_radial``, ``radial_mlp_depth``, ``radial_mlp_width``, ``use_sc``, ``dtype``,
        ``generator`` of :class:`InteractionBlock`.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_attr: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_hidden: o3.Irreps,
        nonlinearity_scalars: Mapping[str, str],
        nonlinearity_gates: Mapping[str, str],
        resnet: bool,
        **interaction,
    ):
        super().__init__()
        parity_key = {1: "e", -1: "o"}
        reachable = [
            (mul, ir) for mul, ir in irreps_hidden if path_exists(irreps_in, irreps_sh, ir)
        ]
        scalars = o3.Irreps([(mul, ir) for mul, ir in reachable if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in reachable if ir.l > 0])
        gate_ir = "0e" if path_exists(irreps_in, irreps_sh, "0e") else "0o"
        gates = o3.Irreps([(mul, gate_ir) for mul, _ in gated])
        with building_e3nn(interaction["dtype"]):
            self.gate = Gate(
                scalars,
                [GATE_ACTIVATIONS[nonlinearity_scalars[parity_key[ir.p]]] for _, ir in scalars],
                gates,
                [GATE_ACTIVATIONS[nonlinearity_gates[parity_key[ir.p]]] for _, ir in gates],
                gated,
            )
        adopt_e3nn(self.gate, None)
        self.resnet = resnet and (scalars + gated).simplify() == irreps_in
        self.conv = InteractionBlock(
            irreps_in, irreps_attr, irreps_sh, self.gate.irreps_in.simplify(), **interaction
        )
        self.irreps_out = self.gate.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        node_attrs: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
        edge_index: torch.Tensor,
        norm: torch.Tensor,
        pair_of_edge: torch.Tensor | None = None,
        inference: bool = False,
    ) -> torch.Tensor:
        """Map (N, irreps_in.dim) node features to (N, irreps_out.dim); see InteractionBlock."""
        out = self.conv(h, node_attrs, sh, radial, edge_index, norm, pair_of_edge, inference)
        out = self.gate(out)
        return h + out if self.resnet else out
