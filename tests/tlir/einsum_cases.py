"""One shared list of einsum equations with operand shapes, checked against `numpy.einsum`.

The equations are copied (they are data) from the einsum tests of three projects:

- opt_einsum: `tests` in `opt_einsum/tests/test_contract.py`, and the equations of its
  `test_input.py`, `test_edge_cases.py`, `test_paths.py`, `test_backends.py`, `test_sharing.py`
  and `test_parser.py`;
- numpy: `numpy/_core/tests/test_einsum.py` (views, sums, broadcasting, singleton broadcasting,
  `optimize_compare` and `TestEinsumPath` equations);
- JAX: `tests/lax_numpy_einsum_test.py` (operand tests, the dask list, broadcasting cases).

Most operands take their sizes from `SIZES` (one fixed size per label) and `ELLIPSIS_DIMS`;
cases where the size matters (size-1 broadcasting, '...' of different ranks, empty dimensions)
carry the shapes their test used. `INVALID` lists (equation, shapes) pairs that numpy rejects,
with the message tlir gives. Both lists are checked against numpy in the tests.
"""

from __future__ import annotations

import itertools
import string
from typing import NamedTuple

Shape = tuple[int, ...]

# One size per label: a=2, b=3, c=4, d=2, ... A=..., distinct for neighbouring letters.
SIZES: dict[str, int] = dict(zip(string.ascii_letters, itertools.cycle((2, 3, 4))))
ELLIPSIS_DIMS: Shape = (3, 2)


class EinsumCase(NamedTuple):
    source: str
    equation: str
    shapes: tuple[Shape, ...]

    @property
    def id(self) -> str:
        return f"{self.source}:{self.equation}"


def input_terms(equation: str) -> list[str]:
    """The operand terms of an equation, spaces removed, '...' kept."""
    return equation.replace(" ", "").split("->")[0].split(",")


def shapes_for(equation: str, ellipsis: Shape = ELLIPSIS_DIMS) -> tuple[Shape, ...]:
    """Operand shapes from `SIZES`, with every '...' covering `ellipsis`."""
    shapes = []
    for term in input_terms(equation):
        before, dots, after = term.partition("...")
        middle = ellipsis if dots else ()
        shape = (*(SIZES[c] for c in before), *middle, *(SIZES[c] for c in after))
        shapes.append(shape)
    return tuple(shapes)


# --------------------------------------------------------------------------------- opt_einsum

OPT_EINSUM_TESTS = [
    # Test scalar-like operations
    "a,->a",
    "ab,->ab",
    ",ab,->ab",
    ",,->",
    # Test hadamard-like products
    "a,ab,abc->abc",
    "a,b,ab->ab",
    # Test index-transformations
    "ea,fb,gc,hd,abcd->efgh",
    "ea,fb,abcd,gc,hd->efgh",
    "abcd,ea,fb,gc,hd->efgh",
    # Test complex contractions
    "acdf,jbje,gihb,hfac,gfac,gifabc,hfac",
    "cd,bdhe,aidb,hgca,gc,hgibcd,hgac",
    "abhe,hidj,jgba,hiab,gab",
    "bde,cdh,agdb,hica,ibd,hgicd,hiac",
    "chd,bde,agbc,hiad,hgc,hgi,hiad",
    "chd,bde,agbc,hiad,bdi,cgh,agdb",
    "bdhe,acad,hiab,agac,hibd",
    # Test collapse
    "ab,ab,c->",
    "ab,ab,c->c",
    "ab,ab,cd,cd->",
    "ab,ab,cd,cd->ac",
    "ab,ab,cd,cd->cd",
    "ab,ab,cd,cd,ef,ef->",
    # Test outer prodcuts
    "ab,cd,ef->abcdef",
    "ab,cd,ef->acdf",
    "ab,cd,de->abcde",
    "ab,cd,de->be",
    "ab,bcd,cd->abcd",
    "ab,bcd,cd->abd",
    # Random test cases that have previously failed
    "eb,cb,fb->cef",
    "dd,fb,be,cdb->cef",
    "bca,cdb,dbf,afc->",
    "dcc,fce,ea,dbf->ab",
    "fdf,cdd,ccd,afe->ae",
    "abcd,ad",
    "ed,fcd,ff,bcf->be",
    "baa,dcf,af,cde->be",
    "bd,db,eac->ace",
    "fff,fae,bef,def->abd",
    "efc,dbc,acf,fd->abe",
    # Inner products
    "ab,ab",
    "ab,ba",
    "abc,abc",
    "abc,bac",
    "abc,cba",
    # GEMM test cases
    "ab,bc",
    "ab,cb",
    "ba,bc",
    "ba,cb",
    "abcd,cd",
    "abcd,ab",
    "abcd,cdef",
    "abcd,cdef->feba",
    "abcd,efdc",
    # Inner than dot
    "aab,bc->ac",
    "ab,bcc->ac",
    "aab,bcc->ac",
    "baa,bcc->ac",
    "aab,ccb->ac",
    # Randomly build test caes
    "aab,fa,df,ecc->bde",
    "ecb,fef,bad,ed->ac",
    "bcf,bbb,fbf,fc->",
    "bb,ff,be->e",
    "bcb,bb,fc,fff->",
    "fbb,dfd,fc,fc->",
    "afd,ba,cc,dc->bf",
    "adb,bc,fa,cfc->d",
    "bbd,bda,fc,db->acf",
    "dba,ead,cad->bce",
    "aef,fbc,dca->bde",
    # test_contract.py: constants, sizes and expression tests
    "hbc,bdef,cdkj,ji,ikeh,lfo",
    "bdef,cdkj,ji,ikeh,hbc,lfo",
    "ijab,acd,bce,df,ef->ji",
    "ab,cd,ad,cb",
    "ab,bc,cd",
    "ij,jk,kl->il",
    "cxa",
    # test_input.py: ellipses and views
    "...a->...",
    "a...->...",
    "a...a->...a",
    "...,...",
    "a,b",
    "...a,...b",
    "...a",
    "...a->...a",
    "...b,...a->...",
    "ab,bc,cd",
    # test_paths.py: scalar paths
    ",a,->a",
    ",,a,->a",
    # test_edge_cases.py
    "->",
    "ab,->",
    "ab,bc->ac",
    "bc,ab->bca",
    "bca,bd->acd",
    # test_paths.py
    "a,b,abc->c",
    "a,bcd,efg->",
    "ab,cd,ef,fg",
    "abc,bdef,fghj,cem,mhk,ljk->adgl",
    "abc,cfd,dbe,efa",
    "nlp,nlq,pl->n",
    # test_backends.py and test_sharing.py
    "AB,BC->CA",
    "ab,bc->ca",
    "abc,bcd,dea",
    "abc,bcd,df->fa",
    "abc,def->fedcba",
    "i,j->ij",
    "ij,jk,kl->",
    "ij,jk,kl->li",
    "ijk,ikj",
    "ijk,k->ij",
    "a,b->",
    "c,d->",
    "ab,bc,cd->",
    "ab,bc,cd->a",
    "ab,bc,cd->b",
    "ab,bc,cd->c",
    "ab,bc,de->",
    # test_parser.py
    "...a,ab",
    "da,ab",
]

OPT_EINSUM_SHAPED: list[tuple[str, tuple[Shape, ...]]] = [
    # test_edge_cases.py: broadcasting contractions
    ("ijk,kl,jl", ((1, 5, 4), (4, 6), (5, 6))),
    ("ijk,kl,jl,i->i", ((1, 5, 4), (4, 6), (5, 6), (10,))),
    ("abjk,kl,jl", ((1, 1, 5, 4), (4, 6), (5, 6))),
    ("abjk,kl,jl,ab->ab", ((1, 1, 5, 4), (4, 6), (5, 6), (7, 7))),
    ("ajk,kbl,jl,ab->ab", ((1, 5, 4), (4, 1, 6), (5, 6), (7, 7))),
    ("obk,ijk->ioj", ((2, 4, 8), (2, 4, 8))),
    ("ab,bc,bd->acd", ((5, 4), (1, 5), (4, 20))),
    # test_input.py: singleton dimension broadcast (gh-10343) and batched matmul
    ("ij,ij->j", ((10, 2), (1, 2))),
    ("...ij,...jk->...ik", ((2, 3, 4), (2, 4, 5))),
    ("...ij,...jk->...ik", ((2, 3, 4), (1, 4, 5))),
]

# ------------------------------------------------------------------------------------ numpy

NUMPY_TESTS = [
    "...",
    "ij",
    "ji",
    "i->i",
    "ij->j",
    "ii->i",
    "...ii->...i",
    "ii...->...i",
    "...ii->i...",
    "jii->ij",
    "ii...->i...",
    "i...i->i...",
    "i...i->...i",
    "iii->i",
    "ijk->jik",
    "i->",
    "...i->...",
    "i...->...",
    "ii",
    "..., ...",
    "...i, ...i",
    "i..., i...",
    "i,j",
    "ij, j",
    "ij,j",
    "ji,j",
    "ij,jk",
    "ij,jk,kl",
    "ijk, jil -> kl",
    "ijk,jil->kl",
    "i,i,i->i",
    ",i->",
    "i,->",
    "...,...",
    "i,i",
    "i,->i",
    ",i->i",
    "z,mz,zm->",
    "ij,ij->j",
    "i, i",
    "ji,i->",
    "i,ij->",
    "ij,i->",
    "ij->i",
    "i...k->...",
    "ij, jh",
    "ij->",
    "i,i->",
    "x,yx,zx->xzy",
    "ijk,j->ijk",
    "ik,kj->ij",
    "ijkl,k->ijl",
    "ijkl,k",
    "aabb->ab",
    "ijij->",
    "mi,mi,mi->m",
    "im,im,im->m",
    "i,i->i",
    "i,i,i->",
    "i,i,i,i->",
    "a,ab,abc->abc",
    "a,b,ab->ab",
    "ea,fb,gc,hd,abcd->efgh",
    "ea,fb,abcd,gc,hd->efgh",
    "abcd,ea,fb,gc,hd->efgh",
    "acdf,jbje,gihb,hfac,gfac,gifabc,hfac",
    "cd,bdhe,aidb,hgca,gc,hgibcd,hgac",
    "abhe,hidj,jgba,hiab,gab",
    "bde,cdh,agdb,hica,ibd,hgicd,hiac",
    "chd,bde,agbc,hiad,hgc,hgi,hiad",
    "chd,bde,agbc,hiad,bdi,cgh,agdb",
    "bdhe,acad,hiab,agac,hibd",
    "ab,ab,c->",
    "ab,ab,c->c",
    "ab,ab,cd,cd->",
    "ab,ab,cd,cd->ac",
    "ab,ab,cd,cd->cd",
    "ab,ab,cd,cd,ef,ef->",
    "ab,cd,ef->abcdef",
    "ab,cd,ef->acdf",
    "ab,cd,de->abcde",
    "ab,cd,de->be",
    "ab,bcd,cd->abcd",
    "ab,bcd,cd->abd",
    "eb,cb,fb->cef",
    "dd,fb,be,cdb->cef",
    "bca,cdb,dbf,afc->",
    "dcc,fce,ea,dbf->ab",
    "fdf,cdd,ccd,afe->ae",
    "abcd,ad",
    "ed,fcd,ff,bcf->be",
    "baa,dcf,af,cde->be",
    "bd,db,eac->ace",
    "fff,fae,bef,def->abd",
    "efc,dbc,acf,fd->abe",
    "ba,ac,da->bcd",
    "ab,ab",
    "ab,ba",
    "abc,abc",
    "abc,bac",
    "abc,cba",
    "aab,fa,df,ecc->bde",
    "ecb,fef,bad,ed->ac",
    "bcf,bbb,fbf,fc->",
    "bb,ff,be->e",
    "bcb,bb,fc,fff->",
    "fbb,dfd,fc,fc->",
    "afd,ba,cc,dc->bf",
    "adb,bc,fa,cfc->d",
    "bbd,bda,fc,db->acf",
    "dba,ead,cad->bce",
    "aef,fbc,dca->bde",
    "a,b,c->abc",
    "acdf,jbje,gihb,hfac",
    "a,ac,ab,ad,cd,bd,bc->",
    "cab,cdd->ab",
    "ab,bc,cd,de->ae",
    "a,a,a->a",
    "ij,jk->ik",
    # test_spaces (gh-10794): every spacing of '{}...a{}->{}...a{}'
    *("{}...a{}->{}...a{}".format(*sp) for sp in itertools.product(["", " "], repeat=4)),
]

NUMPY_SHAPED: list[tuple[str, tuple[Shape, ...]]] = [
    # test_einsum_views
    ("...ii->...i", ((3, 3, 3),)),
    ("i...i->...i", ((3, 3, 3),)),
    ("...", ((2, 3),)),
    # check_einsum_sums
    ("...i->...", ((2, 3, 5),)),
    ("i...->...", ((2, 5),)),
    ("i...->...", ((2, 3, 5),)),
    ("..., ...", ((), ())),
    ("..., ...", ((3, 5), (2, 3, 5))),
    ("...i, ...i", ((2, 3, 5), (5,))),
    ("i..., i...", ((5, 3, 2), (5,))),
    ("i,->i", ((7,), ())),
    (",i->i", ((), (7,))),
    # test_einsum_misc
    ("ij...,j...->i...", ((1, 2), (2, 2, 1))),
    ("...i,...i", ((3,), (3,))),
    ("ijklm,ijn,ijn->", ((5, 12, 4, 2, 3), (5, 12, 11), (5, 12, 11))),
    ("ijklm,ijn->", ((5, 12, 4, 2, 3), (5, 12, 11))),
    ("x,yx,zx->xzy", ((2,), (2, 2), (4, 2))),
    ("i,j", ((1,), (1,))),
    ("i, i", ((4,), (4,))),
    ("ij,ij->j", ((10, 2), (1, 2))),
    ("...ij,...jk->...ik", ((1, 5), (1, 5))),
    ("...ij,...jk->...ik", ((1, 5), (5, 5))),
    ("...ij,...jk->...ik", ((2, 1, 1), (2, 1, 1))),
    ("...ij,...jk->...ik", ((3, 3), (3, 3))),
    # test_einsum_broadcast
    ("ijk,j->ijk", ((2, 3, 4), (3,))),
    ("ij...,j...->ij...", ((2, 3, 4), (3,))),
    ("ij...,...j->ij...", ((2, 3, 4), (3,))),
    ("ij...,j->ij...", ((2, 3, 4), (3,))),
    ("ik,kj->ij", ((4, 3), (3, 2))),
    ("ik...,k...->i...", ((4, 3), (3, 2))),
    ("ik...,...kj->i...j", ((4, 3), (3, 2))),
    ("...k,kj", ((4, 3), (3, 2))),
    ("ik,k...->i...", ((4, 3), (3, 2))),
    ("ijkl,k->ijl", ((2, 3, 4, 5), (4,))),
    ("ijkl,k", ((2, 3, 4, 5), (4,))),
    ("...kl,k", ((2, 3, 4, 5), (4,))),
    ("...kl,k...", ((2, 3, 4, 5), (4,))),
    ("...lmn,...lmno->...o", ((1, 1, 1, 2, 3, 4), (2, 3, 4, 3))),
    ("...lmn,lmno->...o", ((1, 1, 1, 2, 3, 4), (2, 3, 4, 3))),
    # test_einsum_fixedstridebug
    ("cl, cpx->lpx", ((2, 3), (2, 3, 7))),
    ("cl, cpxy->lpxy", ((3, 3), (3, 3, 4, 4))),
    # test_combined_views_mapping (gh-10792)
    ("bbcdc->d", ((1, 1, 3, 1, 3),)),
    # test_broadcasting_dot_cases
    ("ijk,kl,jl", ((1, 5, 4), (4, 6), (5, 6))),
    ("ijk,kl,jl,i->i", ((1, 5, 4), (4, 6), (5, 6), (10,))),
    ("abjk,kl,jl", ((1, 1, 5, 4), (4, 6), (5, 6))),
    ("abjk,kl,jl,ab->ab", ((1, 1, 5, 4), (4, 6), (5, 6), (7, 7))),
    ("obk,ijk->ioj", ((2, 4, 8), (2, 4, 8))),
    # test_output_order (gh-16415)
    ("...ft,mf->...mt", ((2, 3, 5), (4, 3))),
    # test_singleton_broadcasting
    ("ijp,ipq,ikq->ijk", ((3, 1, 1), (3, 1, 3), (1, 3, 3))),
    (
        "jhcabhijaci,dfijejgh->fgje",
        ((1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 1), (3, 1, 3, 1, 1, 1, 1, 2)),
    ),
    ("baegffahgc,hdggeff->dhg", ((2, 1, 4, 1, 1, 1, 1, 2, 1, 1), (1, 1, 1, 1, 4, 1, 1))),
    (
        "cehgbaifff,fhhdegih->cdghbi",
        ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), (2, 1, 1, 2, 4, 1, 1, 1)),
    ),
    ("gah,cdbcghefg->ef", ((2, 3, 1), (1, 3, 1, 1, 1, 2, 1, 4, 1))),
    ("cacc,bcb->", ((1, 1, 1, 1), (1, 4, 1))),
    # test_spaces
    *(
        ("{}...a{}->{}...a{}".format(*sp), ((1, 1),))
        for sp in itertools.product(["", " "], repeat=4)
    ),
]

# -------------------------------------------------------------------------------------- JAX

JAX_TESTS = [
    # test_from_dask (from dask/dask#3412)
    "abc,bad->abcd",
    "abcdef,bcdfg->abcdeg",
    "ea,fb,abcd,gc,hd->efgh",
    "ab,b",
    "aa",
    "a,a->",
    "a,a->a",
    "a,a",
    "a,b",
    "a,b,c",
    "a",
    "ba,b",
    "ba,b->",
    "defab,fedbc->defac",
    "ab...,bc...->ac...",
    "a...a",
    "abc...->cba...",
    "...ab->...a",
    "a...a->a...",
    "...abc,...abcd->...d",
    "ab...,b->ab...",
    "aa->a",
    "ab,ab,c->c",
    "aab,bc->ac",
    "aab,bcc->ac",
    "fdf,cdd,ccd,afe->ae",
    "fff,fae,bef,def->abd",
    # test_einsum_optimization_modes, test_einsum_path, kpmurphy example
    "ij,jkl,klm",
    "ij,jk,kl->il",
    "ntk,kd,dc->nc",
    "ij,ik,il->jkl",
    "ijk,kl->ijl",
    "ij,j->i",
]

JAX_SHAPED: list[tuple[str, tuple[Shape, ...]]] = [
    ("i,j,k->ijk", ((3,), (4,), (5,))),
    ("ij,j->i", ((3, 4), (4,))),
    ("ijk,j->i", ((3, 4, 5), (4,))),
    ("iji,i->j", ((3, 4, 3), (3,))),
    ("ij,ij->", ((3, 4), (3, 4))),
    ("nij,jk->nik", ((10, 2, 3), (3, 4))),
    ("sa,shb->shab", ((2, 1), (2, 3, 4))),
    ("ijk->j", ((3, 4, 5),)),
    ("ijk->kij", ((3, 4, 5),)),
    ("ijk->ki", ((3, 4, 5),)),
    ("...ijk->...ki", ((2, 3, 4, 5),)),
    ("...ijk->ki", ((3, 4, 5),)),
    ("ii->", ((3, 3),)),
    ("ij->", ((3, 3),)),
    ("iii->", ((3, 3, 3),)),
    ("ii->i", ((3, 3),)),
    ("iij->i", ((3, 3, 4),)),
    ("iii->i", ((3, 3, 3),)),
    ("iijkk->i", ((3, 3, 5, 4, 4),)),
    ("iijkk->ik", ((3, 3, 5, 4, 4),)),
    ("iijkl->il", ((3, 3, 5, 4, 4),)),
    ("ij->ij", ((3, 3),)),
    ("ij...,jk...->ik...", ((2, 3, 5, 1), (3, 4, 5, 1))),
    ("ijj,k->ik", ((2, 3, 3), (4,))),
    ("ij,ij,jk->ik", ((2, 3), (2, 3), (3, 4))),
    ("ijkl,ijml->ijkm", ((1, 8, 20, 4), (1, 8, 20, 4))),
    ("cij,cjk->cik", ((3, 4, 5), (3, 1, 6))),
    ("cij,cjk->cik", ((1, 4, 5), (3, 5, 6))),
    ("cij,cjk->cik", ((1, 4, 5), (3, 1, 6))),
    ("...ij,...j", ((2, 1, 3, 3), (2, 4, 3))),
    ("baa->ba", ((1, 2, 2),)),
    ("a,a->a", ((10,), (10,))),
    ("i->", ((3,),)),
    ("ii->i", ((4, 4),)),
    ("ij,jk", ((3, 4), (4, 3))),
    ("ij,jkl,klm", ((2, 2), (2, 3, 4), (3, 4, 2))),
    ("ntk,kd,dc->nc", ((2, 6, 5), (5, 4), (4, 3))),
]

# ---------------------------------------------------------------------------- tlir's own extras
# Upper case, implicit order across cases, spaces, scalars, size-1 and empty dimensions, and
# '...' of different ranks in different operands.

EXTRA_SHAPED: list[tuple[str, tuple[Shape, ...]]] = [
    ("Ab,bC->AC", ((2, 3), (3, 4))),
    ("ba,AB", ((2, 3), (4, 5))),
    ("Zz,zA", ((2, 3), (3, 4))),
    ("aA,Aa->", ((2, 3), (3, 2))),
    ("ZYX->XYZ", ((2, 3, 4),)),
    (" b h q d , b h k d -> b h q k ", ((2, 3, 4, 5), (2, 3, 6, 5))),
    ("bhqd,bhkd->bhqk", ((2, 3, 4, 5), (2, 3, 6, 5))),
    ("bhqk,bhkv->bhqv", ((2, 3, 4, 6), (2, 3, 6, 7))),
    ("bgrqd,bgkd->bgrqk", ((2, 2, 3, 4, 5), (2, 2, 6, 5))),
    ("->", ((),)),
    (",->", ((), ())),
    ("", ((),)),
    (",", ((), ())),
    ("i->", ((0,),)),
    ("ij,jk->ik", ((0, 3), (3, 2))),
    ("ij,jk->ik", ((2, 0), (0, 4))),
    ("ij,jk", ((2, 0), (1, 4))),
    ("i,i", ((0,), (1,))),
    ("i,i->i", ((1,), (0,))),
    ("ii->i", ((0, 0),)),
    ("...i,...i", ((0, 3), (1, 3))),
    ("...,...->...", ((4, 1, 3), (2, 1))),
    ("...i,...i->...", ((2, 1, 3), (5, 3))),
    ("i...,...->...i", ((3,), (4, 2))),
    ("...ij,jk->...ik", ((5, 2, 3, 4), (4, 2))),
    ("a...b,b...c->...ac", ((2, 4, 3), (3, 5, 4, 4))),
    ("i->...i", ((3,),)),
    ("...->", ((),)),
    ("i,i->i", ((1,), (5,))),
    ("ij,j->ij", ((1, 1), (4,))),
    ("ii,i->i", ((1, 1), (4,))),
    ("aab,b->ab", ((1, 1, 2), (1,))),
]


def _cases() -> list[EinsumCase]:
    cases: list[EinsumCase] = []
    seen: set[tuple[str, str, tuple[Shape, ...]]] = set()

    def add(source: str, equation: str, shapes: tuple[Shape, ...]) -> None:
        if (source, equation, shapes) not in seen:
            seen.add((source, equation, shapes))
            cases.append(EinsumCase(source, equation, shapes))

    groups = [
        ("opt_einsum", OPT_EINSUM_TESTS, OPT_EINSUM_SHAPED),
        ("numpy", NUMPY_TESTS, NUMPY_SHAPED),
        ("jax", JAX_TESTS, JAX_SHAPED),
        ("tlir", [], EXTRA_SHAPED),
    ]
    for source, equations, shaped in groups:
        for equation in equations:
            add(source, equation, shapes_for(equation))
        for equation, shapes in shaped:
            add(source, equation, shapes)
    return cases


CASES: list[EinsumCase] = _cases()


def case_ids(cases: list[EinsumCase]) -> list[str]:
    """Readable unique ids: `numpy:ij,jk`, with `#2` for a second shape of one equation."""
    counts: dict[str, int] = {}
    ids = []
    for case in cases:
        counts[case.id] = counts.get(case.id, 0) + 1
        ids.append(case.id + (f"#{counts[case.id]}" if counts[case.id] > 1 else ""))
    return ids


# ------------------------------------------------------------------------------------ invalid
# (equation, operand shapes, message regex): numpy rejects every one of them (from numpy's
# test_einsum_errors and opt_einsum's test_input, plus tlir's own); tlir must raise a TlirError.

INVALID: list[tuple[str, tuple[Shape, ...], str]] = [
    # number of operands must match count in subscripts string
    ("", ((), ()), r"takes 1 operand\(s\), found 2"),
    (",", ((), (), ()), r"takes 2 operand\(s\), found 3"),
    (",", ((2,),), r"takes 2 operand\(s\), found 1"),
    # can't have more subscripts than dimensions in the operand
    ("i", ((),), r"term 'i' has 1 labels but the operand has rank 0"),
    ("ij", ((2,),), r"term 'ij' has 2 labels but the operand has rank 1"),
    ("...i", ((),), r"term '\.\.\.i' needs rank >= 1, found shape \[\]"),
    ("i...j", ((2,),), r"term 'i\.\.\.j' needs rank >= 2, found shape \[2\]"),
    ("i...", ((),), r"needs rank >= 1"),
    ("ij...", ((2,),), r"needs rank >= 2"),
    ("i", ((2, 3),), r"term 'i' has 1 labels but the operand has rank 2"),
    # invalid ellipsis
    ("i..", ((2,),), r"has a '\.' that is not part of '\.\.\.'"),
    (".i...", ((2,),), r"has a '\.' that is not part of '\.\.\.'"),
    ("j->..j", ((2,),), r"the output has a '\.' that is not part of '\.\.\.'"),
    ("j->.j...", ((2,),), r"the output has a '\.' that is not part of '\.\.\.'"),
    ("......->...", ((2,),), r"more than one '\.\.\.'"),
    ("i....", ((2,),), r"'\.' that is not part of '\.\.\.'"),
    # invalid subscript character
    ("i%...", ((2,),), r"invalid character '%' in operand 0"),
    ("...j$", ((2,),), r"invalid character '\$' in operand 0"),
    ("i->&", ((2,),), r"invalid character '&' in the output"),
    ("&,a->", ((), (2,)), r"invalid character '&'"),
    ("a,a->&", ((2,), (2,)), r"invalid character '&' in the output"),
    ("ij->ij_", ((2, 2),), r"invalid character '_'"),
    # arrows
    ("->,->", ((), ()), r"'->' appears more than once"),
    ("i->i->i", ((2,),), r"'->' appears more than once"),
    ("i-i", ((2, 2),), r"stray '-'"),
    ("i>i", ((2, 2),), r"stray '>'"),
    ("i-->i", ((2,),), r"stray '-'"),
    ("i->>i", ((2,),), r"stray '>'"),
    ("i- >i", ((2,),), r"stray '-'"),
    # output subscripts must appear in input
    ("i->ij", ((2,),), r"output label 'j' appears in no input"),
    ("bqd,bkd->bqz", ((2, 3, 4), (2, 5, 4)), r"output label 'z' appears in no input"),
    # output subscripts may only be specified once
    ("ij->jij", ((2, 2),), r"output label 'j' appears more than once"),
    ("...i->......i", ((2, 2),), r"the output has more than one '\.\.\.'"),
    # dimensions must match when being collapsed
    ("ii", ((2, 3),), r"label 'i' repeats in operand 0 with sizes 2 and 3"),
    ("ii->i", ((2, 3),), r"label 'i' repeats in operand 0 with sizes 2 and 3"),
    ("aabcb,abc", ((3, 3, 4, 5, 6), (3, 4, 5)), r"label 'b' repeats in operand 0"),
    ("ii,i->i", ((1, 3), (3,)), r"label 'i' repeats in operand 0 with sizes 1 and 3"),
    # sizes that do not broadcast
    ("ij,jk->ik", ((2, 3), (4, 5)), r"label 'j' has size 3 in operand 0 but 4 in operand 1"),
    ("i,i->", ((0,), (2,)), r"label 'i' has size 0 in operand 0 but 2 in operand 1"),
    ("...i,...i", ((2, 3), (4, 3)), r"'\.\.\.' dimensions \[\(2,\), \(4,\)\] do not broadcast"),
    # '...' covering dimensions the output drops
    ("...i->i", ((2, 3),), r"'\.\.\.' covers dimensions \[2\] but the output has no '\.\.\.'"),
    ("...i->i", ((1, 3),), r"'\.\.\.' covers dimensions \[1\]"),
]
