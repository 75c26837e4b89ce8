"""A MACE interaction's convolution (tensor product on each edge, then the sum over neighbours)
laid out so that inductor's CPU kernels vectorize it, for interactions whose node features are
scalars (the embedded default's and, in every MACE, the first interaction's).

e3nn lays the message out channel-major within each irrep (`32x1o` is [32, 3] flattened), so the
compiled step indexes it with `x // 3`, `x % 3`, `x // 5`, `x % 5`, and inductor fused the
concatenation of the irreps into the sum over neighbours as one scalar loop over all 288
components (a kernel-level profile put 31% of a training step in four such gather/scatter
kernels of the backward pass, see benchmarks/HISTORY.md). Here each path of the tensor product is
computed as [edges, 2l+1, channels], channels innermost and contiguous, summed over neighbours in
that layout, and only the summed node features (about 20x fewer rows than edges) are transposed
to e3nn's layout. The result is the same function (checked against the tensor product when the
module is built); only the order of float operations differs.

It plugs into mace's own hook for fused convolutions (`conv_fusion`, used by cuequivariance and
openequivariance): an interaction with that attribute calls
`conv_tp(node_feats, edge_attrs, tp_weights, edge_index)` and expects the summed message. Only
the compiled training step's view gets it (`trainables.speed.compiled`): the eager model, its
state_dict and everything saved stay plain mace.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch


class Path(NamedTuple):
    """One output irrep of the tensor product: out[u, m] = scale * w[u] * x[u] * y[m]."""
    weights: tuple[int, int]    # the path's columns of the per-edge weights
    edge_attrs: tuple[int, int]  # its columns of the edge attributes (one irrep, 2l+1 wide)


class ScalarNodeConvolution(torch.nn.Module):
    """`scatter_sum(tp(node_feats[sender], edge_attrs, tp_weights), receiver)` for an e3nn
    `TensorProduct` whose first input is `Ux0e` and whose every path is `uvu` with its own output.
    Build it with `from_tensor_product`, which returns None for any other tensor product."""

    def __init__(self, channels: int, paths: list[Path], scales: list[float]):
        super().__init__()
        self.channels, self.paths, self.scales = channels, tuple(paths), tuple(scales)

    @classmethod
    def from_tensor_product(cls, tp: torch.nn.Module | None) -> "ScalarNodeConvolution | None":
        paths = _scalar_uvu_paths(tp)
        if paths is None:
            return None
        conv = cls(tp.irreps_in1[0].mul, paths, [1.0] * len(paths))
        scales = _scales_matching(conv, tp)
        if scales is None:
            return None
        return cls(conv.channels, paths, scales)

    def forward(self, node_feats: torch.Tensor, edge_attrs: torch.Tensor, tp_weights: torch.Tensor,
                edge_index: torch.Tensor) -> torch.Tensor:
        sender, receiver = edge_index[0], edge_index[1]
        nodes, channels = node_feats.shape[0], self.channels
        sent = node_feats[sender]  # [edges, channels]
        blocks = []
        for path, scale in zip(self.paths, self.scales):
            (w0, w1), (a0, a1) = path
            radial = tp_weights[:, w0:w1] * sent                          # [edges, channels]
            angular = edge_attrs[:, a0:a1] * scale                        # [edges, 2l+1]
            message = angular.unsqueeze(2) * radial.unsqueeze(1)          # [edges, 2l+1, channels]
            summed = message.new_zeros((nodes, a1 - a0, channels)).index_add(0, receiver, message)
            blocks.append(summed.transpose(1, 2).reshape(nodes, channels * (a1 - a0)))  # e3nn's layout
        return torch.cat(blocks, dim=1)


def fuse_convolutions(model: torch.nn.Module) -> int:
    """Give every interaction of `model` whose convolution qualifies a ScalarNodeConvolution through
    mace's `conv_fusion` hook, in place; the number of interactions changed. Use it on a copy whose
    modules are its own (`trainables.speed.compiled._shallow_tree_copy`): parameters are untouched."""
    fused = 0
    for block in getattr(model, "interactions", []):
        if hasattr(block, "conv_fusion") or not _has_fusion_hook(type(block)):
            continue
        conv = ScalarNodeConvolution.from_tensor_product(getattr(block, "conv_tp", None))
        if conv is not None:
            block.conv_tp, block.conv_fusion = conv, "scalar_nodes"
            fused += 1
    return fused


def _has_fusion_hook(block_type: type) -> bool:
    """Whether this interaction's forward calls a fused convolution when it has `conv_fusion`."""
    try:
        return "conv_fusion" in inspect.getsource(block_type.forward)
    except (OSError, TypeError):
        return False


def _scalar_uvu_paths(tp) -> list[Path] | None:
    """The paths in output order, when `tp` is an e3nn TensorProduct of the shape this module
    computes: first input one `Ux0e` block, per-edge weights, second input of multiplicity 1, and
    one weighted `uvu` instruction per output irrep, of multiplicity U."""
    needed = ("irreps_in1", "irreps_in2", "irreps_out", "instructions", "shared_weights", "internal_weights")
    if tp is None or not all(hasattr(tp, name) for name in needed) or tp.shared_weights or tp.internal_weights:
        return None
    if len(tp.irreps_in1) != 1 or tp.irreps_in1[0].ir.l != 0 or tp.irreps_in1[0].ir.p != 1:
        return None
    channels = tp.irreps_in1[0].mul
    if any(mul != 1 for mul, _ in tp.irreps_in2) or any(mul != channels for mul, _ in tp.irreps_out):
        return None
    instructions = tp.instructions
    if sorted(ins.i_out for ins in instructions) != list(range(len(tp.irreps_out))):
        return None
    weight_offsets, offset = [], 0
    for ins in instructions:
        if ins.connection_mode != "uvu" or not ins.has_weight or tuple(ins.path_shape) != (channels, 1):
            return None
        if tp.irreps_out[ins.i_out].ir != tp.irreps_in2[ins.i_in2].ir:
            return None
        weight_offsets.append(offset)
        offset += channels
    edge_slices = tp.irreps_in2.slices()
    by_output = sorted(zip(instructions, weight_offsets), key=lambda pair: pair[0].i_out)
    return [Path((start, start + channels), (edge_slices[ins.i_in2].start, edge_slices[ins.i_in2].stop))
            for ins, start in by_output]


def _scales_matching(conv: ScalarNodeConvolution, tp) -> list[float] | None:
    """Each path's constant (e3nn's path weight times its Clebsch-Gordan coefficient), read off
    the tensor product itself; None unless the convolution then equals it on random inputs."""
    reference = tp.output_mask if hasattr(tp, "output_mask") else next(tp.buffers(), None)
    factory = {"dtype": torch.float64 if reference is None else reference.dtype,
               "device": None if reference is None else reference.device}
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(**factory)

    nodes, edges = 4, 7
    node_feats, edge_attrs, weights = random(nodes, conv.channels), random(edges, tp.irreps_in2.dim), \
        random(edges, tp.weight_numel)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator).to(factory["device"])
    with torch.no_grad():
        expected = torch.zeros(nodes, tp.irreps_out.dim, **factory).index_add(
            0, edge_index[1], tp(node_feats[edge_index[0]], edge_attrs, weights))
        unscaled = conv(node_feats, edge_attrs, weights, edge_index)
    scales, column = [], 0
    for (a0, a1) in (path.edge_attrs for path in conv.paths):
        width = conv.channels * (a1 - a0)
        got, want = unscaled[:, column:column + width], expected[:, column:column + width]
        scales.append(float((got * want).sum() / (got * got).sum()))
        column += width
    scaled = ScalarNodeConvolution(conv.channels, list(conv.paths), scales)
    with torch.no_grad():
        close = torch.allclose(scaled(node_feats, edge_attrs, weights, edge_index), expected,
                               rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    return scales if close else None
