r"""NequIP's per-edge "uvu" tensor product, grouped by input irrep.

For every instruction p (input irrep a of multiplicity U and order :math:`l_1`, harmonic
:math:`l_2`, output order :math:`l_3`) e3nn's ``TensorProduct`` computes

.. math::
    m^{(p)}_{zuk} = \alpha_p \, w^{(p)}_{zu} \sum_{ij} C^{l_1 l_2 l_3}_{ijk} \, x_{zui} \, Y_{zj}

(z an edge, C the Wigner 3j symbols, :math:`\alpha_p` e3nn's path weight). It materialises
the outer product :math:`x_{zui} Y_{zj}` for every pair of irreps. Here the harmonics are
contracted with the 3j symbols first, for all paths of one input irrep at once,

.. math:: T^{(a)}_{zik} = \sum_j Y_{zj} \, M^{(a)}_{j,ik}, \qquad
          m^{(a)}_{zuk} = w_{zu\,p(k)} \sum_i x_{zui} T^{(a)}_{zik},

one matrix product and one batched matrix product per input irrep. The messages of all paths
of one input irrep, (E, W, U) with W the summed output widths, are weighted and summed onto the
centre atoms in one contiguous block; one permutation of the (N, mid_dim) columns at the end
puts every path's (U, 2 l_3 + 1) block into e3nn's output layout. The numbers are e3nn's (to
rounding).
"""

from __future__ import annotations

import itertools

import torch
from e3nn import o3


class UVUTensorProduct(torch.nn.Module):
    """The uvu tensor product of an e3nn ``TensorProduct`` (external per-edge weights).

    Attributes ``chunked`` (default True) and ``chunk_bytes`` (1 MiB) choose the chunked
    inference path (:class:`ChunkedMessageSum`) and its chunk size in bytes of messages.

    Parameters
    ----------
    tp : e3nn.o3.TensorProduct
        Built with ``shared_weights=False, internal_weights=False`` and only "uvu"
        instructions with weights, whose second input has multiplicity 1 (the harmonics).
        Its instructions, path weights and weight layout are taken over; it is not kept.
    dtype : torch.dtype
        The model dtype (of the constants).
    """

    def __init__(self, tp: o3.TensorProduct, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.weight_numel = tp.weight_numel
        self.mid_dim = tp.irreps_out.dim
        for ins in tp.instructions:
            single = tp.irreps_in2[ins.i_in2].mul == 1
            if ins.connection_mode != "uvu" or not ins.has_weight or not single:
                raise ValueError(
                    "UVUTensorProduct needs weighted uvu paths with a one-channel second input."
                )
        if [ins.i_in1 for ins in tp.instructions] != sorted(ins.i_in1 for ins in tp.instructions):
            raise ValueError("UVUTensorProduct needs the paths ordered by their first input.")
        sh_slices, mid_slices = tp.irreps_in2.slices(), tp.irreps_out.slices()
        self.x_sizes = [mul * ir.dim for mul, ir in tp.irreps_in1]
        self.weight_sizes: list[int] = []
        # per input irrep with paths: (its index in x_sizes, U, 2 l1 + 1, output dim of each path)
        self.groups: list[tuple[int, int, int, list[int]]] = []
        blocks = []  # e3nn's output slice of each path, in our order
        for a, (mul, ir) in enumerate(tp.irreps_in1):
            paths = [ins for ins in tp.instructions if ins.i_in1 == a]
            if not paths or mul == 0:
                continue
            widths = [tp.irreps_out[ins.i_out].ir.dim for ins in paths]
            contraction = torch.zeros(tp.irreps_in2.dim, ir.dim, sum(widths), dtype=torch.float64)
            start = 0
            for ins, width in zip(paths, widths, strict=True):
                l2, l3 = tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l
                w3j = o3.wigner_3j(ir.l, l2, l3, dtype=torch.float64)  # (I, J, K)
                block = ins.path_weight * w3j.permute(1, 0, 2)
                contraction[sh_slices[ins.i_in2], :, start : start + width] = block
                blocks.append(mid_slices[ins.i_out])
                start += width
            contraction = contraction.reshape(tp.irreps_in2.dim, -1).to(dtype)
            self.register_buffer(f"contraction_{len(self.groups)}", contraction, persistent=False)
            self.groups.append((a, mul, ir.dim, widths))
            self.weight_sizes.append(mul * len(paths))
        if sum(block.stop - block.start for block in blocks) != self.mid_dim:
            raise ValueError("Every output irrep of the tensor product must come from one path.")
        self._register_summation_layout([(block.start, block.stop) for block in blocks])
        # inference in chunks of about chunk_bytes of messages (1 thread, float32, against one
        # pass: OAM-L-sized, 5472 per edge, 3.5 -> 1.6-1.9 s at 96 atoms; tutorial-sized, 352
        # per edge, 73 -> 65 ms at 108 atoms, 1.43 -> 1.14 s at 2048)
        self.chunked = True
        self.chunk_bytes = 1 << 20
        self._register_load_state_dict_pre_hook(_drop_old_constants, with_module=True)

    def _register_summation_layout(self, blocks: list[tuple[int, int]]) -> None:
        """Index buffers: each path's weight per output column, and the final permutation.

        ``spread_g`` (W_g,) gives, for each column of input irrep g's messages, its path (in
        the group); ``layout`` (mid_dim,) gives, for each column of e3nn's output, its column
        in the concatenated (N, sum_g W_g U_g) sums, which are laid out [path][k][u].
        """
        layout = torch.empty(self.mid_dim, dtype=torch.long)
        blocks_in_order, offset = iter(blocks), 0
        for group, (_, mul, _, widths) in enumerate(self.groups):
            paths = torch.arange(len(widths))
            spread = torch.repeat_interleave(paths, torch.tensor(widths))
            self.register_buffer(f"spread_{group}", spread, persistent=False)
            column = 0  # of the path's first output component within the group
            for width in widths:
                start, _ = next(blocks_in_order)
                k, u = torch.meshgrid(torch.arange(width), torch.arange(mul), indexing="ij")
                layout[start + u * width + k] = offset + (column + k) * mul + u
                column += width
            offset += column * mul
        self.register_buffer("layout", layout, persistent=False)

    def forward(
        self,
        x: torch.Tensor,
        sh: torch.Tensor,
        weights: torch.Tensor,
        center: torch.Tensor,
        num_nodes: int,
        inference: bool = False,
    ) -> torch.Tensor:
        """Messages of E edges summed onto their centre atoms.

        Parameters
        ----------
        x : torch.Tensor
            (E, irreps_in1.dim) features of each edge's sending atom.
        sh : torch.Tensor
            (E, irreps_in2.dim) spherical harmonics of the edge.
        weights : torch.Tensor
            (E, weight_numel) per-edge path weights in e3nn's layout.
        center : torch.Tensor
            (E,) int64 receiving atom of each edge.
        num_nodes : int
            Number of atoms N.
        inference : bool
            No weight of the whole model needs gradients, so the result is differentiated
            at most once (forces and stress): then, if ``chunked`` and on a CPU, the edges are
            processed in chunks (:class:`ChunkedMessageSum`).

        Returns
        -------
        torch.Tensor
            (N, mid_dim) summed messages in the layout of e3nn's output irreps.
        """
        if inference and self.chunked and x.device.type == "cpu":
            # in chunks whose per-edge tensors stay in cache (ChunkedMessageSum); not on a GPU,
            # where many small chunks would cost a kernel launch each (not measured there)
            inputs = (x, sh, weights)
            sums = ChunkedMessageSum.apply(self, center, num_nodes, self.chunk_size(), *inputs)
        else:
            sums = self.message_sums(x, sh, weights, center, num_nodes)
        return sums.index_select(1, self.layout)

    def chunk_size(self) -> int:
        """Edges per chunk: about ``chunk_bytes`` of messages (E, mid_dim) per chunk."""
        itemsize = self.contraction_0.element_size() if self.groups else 4
        return max(16, self.chunk_bytes // (itemsize * max(self.mid_dim, 1)))

    def messages(
        self, x: torch.Tensor, sh: torch.Tensor, weights: torch.Tensor
    ) -> list[torch.Tensor]:
        """Weighted messages of each input irrep g, (E, W_g * U_g), path-major columns."""
        # split (not sliced) views: their backward concatenates instead of zero-filling
        x_groups = x.split(self.x_sizes, dim=1)
        weight_groups = weights.split(self.weight_sizes, dim=1)
        messages = []
        for group, (a, *_) in enumerate(self.groups):
            basis, sender, path_weights = self.factors(group, sh, x_groups[a], weight_groups[group])
            products = torch.bmm(basis.transpose(1, 2), sender)  # (E, W, U)
            spread = path_weights.index_select(1, getattr(self, f"spread_{group}"))
            messages.append((products * spread).flatten(1))
        return messages

    def factors(
        self, group: int, sh: torch.Tensor, x_group: torch.Tensor, weight_group: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input irrep ``group``'s (E, dim, W) basis, (E, dim, U) sender, (E, P, U) weights.

        ``x_group`` and ``weight_group`` are the group's columns of ``x`` and ``weights``.
        """
        _, mul, dim, widths = self.groups[group]
        basis = sh @ getattr(self, f"contraction_{group}")
        basis = basis.view(sh.shape[0], dim, sum(widths))
        sender = x_group.unflatten(1, (mul, dim)).transpose(1, 2)
        return basis, sender, weight_group.unflatten(1, (len(widths), mul))

    def message_sums(
        self,
        x: torch.Tensor,
        sh: torch.Tensor,
        weights: torch.Tensor,
        center: torch.Tensor,
        num_nodes: int,
    ) -> torch.Tensor:
        """(N, mid_dim) sums of the messages in the path-major layout (before ``layout``)."""
        return torch.cat(
            [
                m.new_zeros((num_nodes, m.shape[1])).index_add_(0, center, m)
                for m in self.messages(x, sh, weights)
            ],
            dim=1,
        )


class ChunkedMessageSum(torch.autograd.Function):
    """:meth:`UVUTensorProduct.message_sums` over chunks of edges, recomputed in the backward.

    The per-edge tensors of the tensor product, (E, W, U) per input irrep, are what costs time
    in large NequIP models: they are written and read several times in memory. Here each
    chunk of edges is multiplied and summed while its tensors are in cache, and only the
    inputs are kept for the backward pass, which recomputes each chunk's products and
    differentiates them on their own. The numbers are those of the one-pass evaluation (to
    rounding). One backward pass only (no ``create_graph``), so the path is used when no
    parameter needs gradients.
    """

    @staticmethod
    def forward(ctx, tp, center, num_nodes, chunk, x, sh, weights):
        """(N, mid_dim) message sums of ``tp``, ``chunk`` edges at a time; keeps the inputs."""
        ctx.tp, ctx.chunk = tp, chunk
        ctx.save_for_backward(center, x, sh, weights)
        sums = x.new_zeros((num_nodes, tp.mid_dim))
        for start in range(0, x.shape[0], chunk):
            part = slice(start, start + chunk)
            messages = torch.cat(tp.messages(x[part], sh[part], weights[part]), dim=1)
            sums.index_add_(0, center[part], messages)
        return sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sums):
        """Gradients of x, sh and weights; each chunk's products are recomputed.

        By hand, group by group: the derivatives of basis = sh @ contraction, products =
        basis^T sender (bmm) and messages = products times the spread path weights.
        """
        center, x, sh, weights = ctx.saved_tensors
        tp, chunk = ctx.tp, ctx.chunk
        grad_x, grad_sh = torch.zeros_like(x), torch.empty_like(sh)
        grad_weights = torch.empty_like(weights)
        x_starts = [0, *itertools.accumulate(tp.x_sizes)]
        weight_starts = [0, *itertools.accumulate(tp.weight_sizes)]
        sum_starts = [0, *itertools.accumulate(sum(w) * mul for _, mul, _, w in tp.groups)]
        for start in range(0, x.shape[0], chunk):
            rows = slice(start, min(start + chunk, x.shape[0]))
            grad_rows = grad_sums.index_select(0, center[rows])  # (c, mid_dim)
            sh_rows, grad_sh_rows = sh[rows], None
            for group, (a, mul, _, widths) in enumerate(tp.groups):
                x_cols = slice(x_starts[a], x_starts[a + 1])
                w_cols = slice(weight_starts[group], weight_starts[group + 1])
                basis, sender, path_weights = tp.factors(
                    group, sh_rows, x[rows, x_cols], weights[rows, w_cols]
                )
                spread_index = getattr(tp, f"spread_{group}")
                grad_messages = grad_rows[:, sum_starts[group] : sum_starts[group + 1]]
                grad_messages = grad_messages.unflatten(1, (sum(widths), mul))  # (c, W, U)
                products = torch.bmm(basis.transpose(1, 2), sender)
                grad_products = grad_messages * path_weights.index_select(1, spread_index)
                grad_paths = torch.zeros_like(path_weights)
                grad_paths.index_add_(1, spread_index, grad_messages * products)
                grad_weights[rows, w_cols] = grad_paths.flatten(1)
                grad_sender = torch.bmm(basis, grad_products)  # (c, dim, U)
                grad_x[rows, x_cols] = grad_sender.transpose(1, 2).flatten(1)
                grad_basis = torch.bmm(sender, grad_products.transpose(1, 2))  # (c, dim, W)
                contraction = getattr(tp, f"contraction_{group}")  # (J, dim * W)
                term = grad_basis.flatten(1) @ contraction.T
                grad_sh_rows = term if grad_sh_rows is None else grad_sh_rows.add_(term)
            grad_sh[rows] = 0.0 if grad_sh_rows is None else grad_sh_rows
        return None, None, None, None, grad_x, grad_sh, grad_weights


def _drop_old_constants(module: torch.nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """Files written when this was e3nn's module may hold its constants; they are not needed."""
    for key in [key for key in state_dict if key.startswith(prefix)]:
        del state_dict[key]
