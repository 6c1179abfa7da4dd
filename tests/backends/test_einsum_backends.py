"""Every einsum of the shared list runs through both backends and matches numpy.einsum."""

from __future__ import annotations

import numpy as np
import pytest

import tlir
from backends import jax as backend_jax
from backends import numpy as backend_numpy
from backends.interpreter import BINARY, REDUCE, SPECIAL, UNARY
from tests.tlir.einsum_cases import CASES, case_ids


def one_node_graph(spec: str, n_operands: int, kind: str | None = None) -> tlir.EinsumGraph:
    graph = tlir.EinsumGraph()
    operands = [graph.add_tensor(f"x{i}") for i in range(n_operands)]
    graph.add_node(tlir.EinsumNode(spec, operands, (graph.add_tensor("out"),), kind=kind))
    for t in operands:
        graph.add_input(t)
    return graph


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_einsum_through_both_backends(case):
    rng = np.random.default_rng(len(case.equation))
    arrays = [rng.standard_normal(shape) for shape in case.shapes]
    expected = np.einsum(case.equation, *arrays)
    graph = one_node_graph(case.equation, len(arrays), kind="einsum")
    (reference,) = backend_numpy.run(graph, *arrays)
    np.testing.assert_allclose(reference, expected, rtol=1e-4, atol=1e-4)
    (lowered,) = backend_jax.lower(graph)(*(a.astype(np.float32) for a in arrays))
    assert lowered.shape == expected.shape
    np.testing.assert_allclose(np.asarray(lowered), expected, rtol=1e-4, atol=1e-4)


def test_every_registered_op_has_an_implementation():
    implemented = set(UNARY) | set(BINARY) | set(REDUCE) | SPECIAL
    assert set(tlir.ops.OPS) <= implemented, set(tlir.ops.OPS) - implemented


OPS = [
    ("exp:ij->ij", [(2, 3)], lambda x: np.exp(x)),
    ("sub:ij,i->ij", [(2, 3), (2,)], lambda x, y: x - y[:, None]),
    ("mul:ij,j->ji", [(2, 3), (3,)], lambda x, y: (x * y).T),
    ("maximum:ij,ij->ij", [(2, 3), (2, 3)], np.maximum),
    ("max:ijk->ki", [(2, 3, 4)], lambda x: x.max(axis=1).T),
    ("sum:ij->", [(2, 3)], lambda x: x.sum()),
    ("logsumexp:ij->i", [(2, 3)], lambda x: np.log(np.exp(x).sum(1))),
    ("scale(0.5):ij->ij", [(2, 3)], lambda x: 0.5 * x),
    ("softmax(j):ij->ij", [(2, 3)], lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ("rsqrt_size(j):ij->", [(2, 16)], lambda x: np.float64(0.25)),
    ("num_tiles(j,5):ij->", [(2, 16)], lambda x: 4),
    ("pad_tiles(j,5):ij->ij", [(2, 7)], lambda x: np.pad(x, [(0, 0), (0, 3)])),
    ("pad_tiles(j,5):ij->ij#short", [(2, 3)], lambda x: x),  # a tile never exceeds the axis
    ("crop(j):ij,kj->ij", [(2, 5), (1, 3)], lambda x, y: x[:, :3]),
    ("full(2):ij,jk->ik", [(2, 3), (3, 4)], lambda x, y: np.full((2, 4), 2.0)),
    ("softmax_k", [(2, 3)], lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    ("sum(1)", [(2, 3, 4)], lambda x: x.sum(1)),
]


@pytest.mark.parametrize("spec, shapes, expected", OPS, ids=[o[0] for o in OPS])
def test_ops_through_both_backends(spec, shapes, expected):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    kind = "reduce" if spec == "sum(1)" else None
    graph = one_node_graph(spec.split("#")[0], len(arrays), kind)
    want = expected(*arrays)
    (got,) = backend_numpy.run(graph, *arrays)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    (lowered,) = backend_jax.lower(graph)(*(a.astype(np.float32) for a in arrays))
    np.testing.assert_allclose(np.asarray(lowered), want, rtol=1e-5, atol=1e-6)


def test_lowering_a_flash_node_names_the_pass():
    graph = one_node_graph("flash_bhqd,bhkd,bhkv->bhqv_16_16", 3)
    with pytest.raises(tlir.LoweringError, match=r"run the 'tile-flash' pass"):
        backend_jax.lower(graph)


def test_wrong_number_of_inputs_is_a_lowering_error():
    graph = one_node_graph("ij,jk->ik", 2)
    with pytest.raises(tlir.LoweringError, match=r"takes 2 input\(s\) \(x0, x1\), found 1"):
        backend_numpy.run(graph, np.ones((2, 2)))
