"""Explicit SIMD vectors for Numba kernels: a 16-lane float32 vector type and the few operations a register-tiled
convolution needs (zero, unaligned load/store, broadcast multiply-add).

LLVM's loop vectoriser keeps a convolution's accumulators in memory (one load and one store per multiply-add
block); a register tile needs the vectors as values, which Numba has no type for. ``F32x16`` is that type: an
LLVM ``<16 x float>`` in a virtual register, so a kernel written with these intrinsics compiles to exactly the
loads, broadcasts and FMAs it spells out. On AVX-512 one vector is one zmm register; elsewhere LLVM splits it
into the native width (two ymm on AVX2), so the kernels stay correct on every CPU; each host gets the tile
shapes that fit its registers (``kernels.register_tile``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

LANES = 16
_VEC = ir.VectorType(ir.FloatType(), LANES)


class F32x16Type(types.Type):
    def __init__(self) -> None:
        super().__init__(name="F32x16")


f32x16 = F32x16Type()


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _VEC)


def _element_ptr(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(ary.data, [idx]), _VEC.as_pointer())


def _check_f32_array(arr) -> None:
    if not (isinstance(arr, types.Array) and arr.dtype == types.float32 and arr.ndim == 1 and arr.layout == "C"):
        raise TypeError(f"expected a contiguous 1-D float32 array, got {arr}")


@intrinsic
def vzero(typingctx):
    """A vector of zeros."""

    def codegen(context, builder, sig, args):
        return ir.Constant(_VEC, [0.0] * LANES)

    return f32x16(), codegen


@intrinsic
def vload(typingctx, arr, idx):
    """``arr[idx:idx + 16]`` as a vector (unaligned, no bounds check)."""
    _check_f32_array(arr)

    def codegen(context, builder, sig, args):
        return builder.load(_element_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)

    return f32x16(arr, types.intp), codegen


def _first_lanes(builder, n):
    """The mask of the lanes below ``n``."""
    i64 = ir.VectorType(ir.IntType(64), LANES)
    nv = builder.insert_element(ir.Constant(i64, ir.Undefined), n, ir.Constant(ir.IntType(32), 0))
    nv = builder.shuffle_vector(nv, ir.Constant(i64, ir.Undefined),
                                ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return builder.icmp_signed("<", ir.Constant(i64, list(range(LANES))), nv)


@intrinsic
def vload_n(typingctx, arr, idx, n):
    """``arr[idx:idx + n]`` in the first ``n`` lanes, zero in the others; memory past ``idx + n`` is not touched
    (a masked load: the tail of a row that ends at the end of an array)."""
    _check_f32_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        mask = _first_lanes(builder, args[2])
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_VEC, [ptr.type, ir.IntType(32), mask.type, _VEC]),
            "llvm.masked.load.v16f32.p0")
        return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 4), mask, ir.Constant(_VEC, [0.0] * LANES)])

    return f32x16(arr, types.intp, types.intp), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):
    """``arr[idx:idx + 16] = v`` (unaligned, no bounds check)."""
    _check_f32_array(arr)

    def codegen(context, builder, sig, args):
        builder.store(args[2], _element_ptr(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()

    return types.none(arr, types.intp, f32x16), codegen


@intrinsic
def vfma(typingctx, acc, s, v):
    """``acc + s * v`` lane by lane, ``s`` a float32 scalar broadcast to every lane (one fused multiply-add)."""

    def codegen(context, builder, sig, args):
        a, scalar, x = args
        b = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        b = builder.shuffle_vector(b, ir.Constant(_VEC, ir.Undefined),
                                   ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]),
                                             "llvm.fma.v16f32")
        return builder.call(fma, [b, x, a])

    return f32x16(f32x16, types.float32, f32x16), codegen


@intrinsic
def vbcast(typingctx, arr, idx):
    """``arr[idx]`` in every lane (no bounds check and no negative-index wraparound: a register tile that reads
    through a dozen computed offsets would otherwise pay a compare and a select per read)."""
    _check_f32_array(arr)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        s = builder.load(builder.gep(ary.data, [args[1]]), align=4)
        b = builder.insert_element(ir.Constant(_VEC, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(b, ir.Constant(_VEC, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))

    return f32x16(arr, types.intp), codegen


@intrinsic
def vmad(typingctx, acc, a, b):
    """``acc + a * b`` lane by lane (one fused multiply-add of two vectors)."""

    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]),
                                             "llvm.fma.v16f32")
        return builder.call(fma, [args[1], args[2], args[0]])

    return f32x16(f32x16, f32x16, f32x16), codegen


@intrinsic
def vsum(typingctx, v):
    """The sum of the 16 lanes as a float32 (a tree of adds: lane order is not kept)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.FloatType(), [ir.FloatType(), _VEC]),
                                            "llvm.vector.reduce.fadd.v16f32")
        return builder.call(fn, [ir.Constant(ir.FloatType(), 0.0), args[0]], fastmath=("reassoc",))

    return types.float32(f32x16), codegen


@intrinsic
def vstore_n(typingctx, arr, idx, v, n):
    """``arr[idx:idx + n] = v[:n]`` (a masked store: memory past ``idx + n`` is not touched)."""
    _check_f32_array(arr)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], args[1])
        mask = _first_lanes(builder, args[3])
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_VEC, ptr.type, ir.IntType(32), mask.type]),
            "llvm.masked.store.v16f32.p0")
        builder.call(fn, [args[2], ptr, ir.Constant(ir.IntType(32), 4), mask])
        return context.get_dummy_value()

    return types.none(arr, types.intp, f32x16, types.intp), codegen
