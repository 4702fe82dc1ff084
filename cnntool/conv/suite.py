"""The conformance suite and benchmark behind ``cnntool conv-test``: library functions returning plain data.

Every case is checked against a float64 torch reference (``F.conv2d`` and autograd); the tolerance scales with the
magnitude of that reference and the number of terms each output sums. Timings are paired: numba and torch run
alternately on the same inputs and the reported ratio is the median of the per-pair ratios.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from cnntool.conv import kernels as K
from cnntool.conv.function import (
    backward_numpy,
    blur_kernel,
    conv2d,
    filter2d,
    forward_numpy,
    make_geometry,
)


@dataclass(frozen=True)
class Case:
    """One convolution: input/weight shapes and hyper-parameters; ``grad`` also checks the backward pass."""

    name: str
    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: str = "random"  # "random" | "zero" | "none"
    grad: bool = False
    dtype: str = "float32"
    blur: int = 0  # >0: filter2d with a box blur of this size (w is then (C, 1, k, k))
    group: str = ""

    @property
    def shape(self) -> str:
        x = "x".join(map(str, self.x))
        w = "x".join(map(str, self.w))
        extra = []
        if self.stride != 1:
            extra.append(f"s{self.stride}")
        if self.padding != 0:
            extra.append(f"p{self.padding}")
        if self.dilation != 1:
            extra.append(f"d{self.dilation}")
        if self.groups != 1:
            extra.append(f"g{self.groups}")
        return f"{x} * {w}" + (" " + ",".join(str(e).replace(" ", "") for e in extra) if extra else "")


@dataclass
class Result:
    case: str
    shape: str
    part: str  # forward | grad_input | grad_weight | grad_bias | backward
    max_abs_error: float | None
    tolerance: float | None
    passed: bool
    numba_ms: float | None = None
    torch_ms: float | None = None
    ratio: float | None = None
    gflops: float | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SuiteReport:
    results: list[Result] = field(default_factory=list)
    threads: int = 0
    seconds: float = 0.0
    mode: str = "full"

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> int:
        return sum(not r.passed for r in self.results)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "failures": self.failures, "threads": self.threads,
                "seconds": round(self.seconds, 3), "mode": self.mode,
                "results": [r.to_dict() for r in self.results]}


# --------------------------------------------------------------------------------------------------- cases

BENCH_CASES = (
    Case("a", (4, 128, 64, 64), (128, 128, 3, 3), group="bench"),
    Case("b", (4, 128, 64, 64), (128, 128, 3, 3), stride=2, dilation=2, group="bench"),
    Case("c", (4, 128, 64, 64), (256, 4, 3, 3), groups=32, group="bench"),
    Case("d", (128, 64, 32, 32), (64, 64, 3, 3), padding=1, group="bench"),
    Case("e", (4, 128, 64, 64), (128, 1, 5, 5), padding=2, groups=128, group="bench"),
)


def conformance_cases(quick: bool = False) -> list[Case]:
    """The coursework's cases at its sizes (4x128x64x64 inputs), plus padding modes, backward and float64.

    ``quick`` keeps every kind of case but shrinks batch, channels and image size.
    """
    N, C, S = (1, 32, 24) if quick else (4, 128, 64)
    x = (N, C, S, S)
    cases: list[Case] = []
    add = cases.append
    for k in range(1, 8):
        add(Case(f"square k={k}", x, (C, C, k, k), group="kernel size"))
    for k in (1, 2, 3) if not quick else (1, 3):
        add(Case(f"horizontal {k}x{k + 2}", x, (C, C, k, k + 2), group="kernel shape"))
        add(Case(f"vertical {k + 2}x{k}", x, (C, C, k + 2, k), group="kernel shape"))
    grow = ((1, 3), (3, 16), (16, 64), (64, 128), (128, 243))
    shrink = ((243, 128), (128, 16), (16, 3), (3, 1))
    equal = ((3, 3), (64, 64), (128, 128))
    for label, pairs in (("growing", grow), ("shrinking", shrink), ("equal", equal)):
        for cin, cout in pairs:
            if quick:
                cin, cout = (c if c < 16 else c // 4 for c in (cin, cout))
            add(Case(f"channels {label} {cin}->{cout}", (N, cin, S, S), (cout, cin, 3, 3), group="channels"))
    for s in (1, 2, 3):
        add(Case(f"stride {s}", x, (C, C, 3, 3), stride=s, group="stride"))
    for d in (1, 2, 3):
        add(Case(f"dilation {d}", x, (C, C, 3, 3), dilation=d, group="dilation"))
    add(Case("stride 2 dilation 2", x, (C, C, 3, 3), stride=2, dilation=2, group="dilation"))
    cg_in, cg_out = (C, 2 * C)
    for g in (4, 8, 16, 32, 64) if not quick else (4, 16):
        add(Case(f"groups {g}", x, (cg_out, cg_in // g, 3, 3), groups=g, group="groups"))
    add(Case(f"depthwise {C}", x, (C, 1, 3, 3), padding=1, groups=C, group="groups"))
    for b in ("random", "zero", "none"):
        add(Case(f"bias {b}", x, (C, C, 3, 3), bias=b, group="bias"))
    for k in range(1, 7):
        add(Case(f"blur {k}x{k}", x, (C, 1, k, k), padding="same", groups=C, blur=k, bias="none", group="blur"))
    for pad in (1, (1, 2), "same", "valid"):
        add(Case(f"padding {pad!r}", x, (C, C, 3, 3), padding=pad, group="padding"))
    add(Case("padding 'same' 4x4 (asymmetric)", x, (C, C, 4, 4), padding="same", group="padding"))
    add(Case("padding 'same' dilation 2", x, (C, C, 3, 3), padding="same", dilation=2, group="padding"))
    add(Case("padding 3 > kernel/2", x, (C, C, 3, 3), padding=3, stride=2, group="padding"))
    # backward (grad-input, grad-weight, grad-bias vs autograd) on the same sizes
    gx = x
    add(Case("backward 3x3 p1", gx, (C, C, 3, 3), padding=1, grad=True, group="backward"))
    add(Case("backward 1x1", gx, (C, C, 1, 1), grad=True, group="backward"))
    add(Case("backward 2x5 s(1,2) p(0,2)", gx, (C, C, 2, 5), stride=(1, 2), padding=(0, 2), grad=True,
             group="backward"))
    add(Case("backward 3x3 s2 d2", gx, (C, C, 3, 3), stride=2, dilation=2, grad=True, group="backward"))
    add(Case("backward 3x3 s3 p1", gx, (C, C, 3, 3), stride=3, padding=1, grad=True, group="backward"))
    add(Case("backward groups 32", gx, (2 * C, C // 32, 3, 3), groups=32, grad=True, group="backward"))
    add(Case("backward depthwise 5x5", gx, (C, 1, 5, 5), padding=2, groups=C, grad=True, group="backward"))
    add(Case("backward 128->243 'same'", (N, C, S, S), (243 if not quick else 61, C, 3, 3), padding="same",
             grad=True, group="backward"))
    add(Case("backward blur 4x4", gx, (C, 1, 4, 4), padding="same", groups=C, blur=4, bias="none", grad=True,
             group="backward"))
    # float64 (a cheaper size: the float64 torch reference is the slow part)
    xs64 = (2, 32, 32, 32) if not quick else (1, 8, 16, 16)
    add(Case("float64 3x3 p1", xs64, (xs64[1], xs64[1], 3, 3), padding=1, dtype="float64", grad=True,
             group="float64"))
    add(Case("float64 5x3 s2 d(1,2) g4", xs64, (xs64[1], xs64[1] // 4, 5, 3), stride=2, dilation=(1, 2), groups=4,
             padding=(2, 1), dtype="float64", grad=True, group="float64"))
    return cases


# ------------------------------------------------------------------------------------------ making inputs

def _dtype(case: Case) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[case.dtype]


def make_inputs(case: Case, seed: int = 0):
    """(x, weight, bias) for a case; weights scaled like Kaiming init so outputs stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    dt = _dtype(case)
    x = torch.randn(case.x, generator=gen, dtype=torch.float64).to(dt)
    if case.blur:
        k = blur_kernel(case.blur, dtype=dt)
        w = k.reshape(1, 1, case.blur, case.blur).expand(case.w).contiguous()
    else:
        fan_in = case.w[1] * case.w[2] * case.w[3]
        w = (torch.randn(case.w, generator=gen, dtype=torch.float64) / math.sqrt(fan_in)).to(dt)
    if case.bias == "random":
        b = torch.randn(case.w[0], generator=gen, dtype=torch.float64).to(dt)
    elif case.bias == "zero":
        b = torch.zeros(case.w[0], dtype=dt)
    else:
        b = None
    return x, w, b


def tolerance(ref: torch.Tensor, n_terms: int, dtype: torch.dtype) -> float:
    """Allowed max abs error: eps(dtype) * max|reference| * (8 + sqrt(terms per output))."""
    eps = torch.finfo(dtype).eps
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return eps * max(scale, 1e-30) * (8.0 + math.sqrt(max(1, n_terms)))


def _max_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    d = (got.double() - ref).abs()
    if not torch.isfinite(got).all():
        return float("inf")
    return float(d.max()) if d.numel() else 0.0


def _numba_fn(case: Case):
    if case.blur:
        k = blur_kernel(case.blur, dtype=_dtype(case))
        return lambda x, w, b: filter2d(x, k, stride=case.stride, padding=case.padding)
    return lambda x, w, b: conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)


def _torch_fn(case: Case):
    return lambda x, w, b: F.conv2d(x, w, b, case.stride, case.padding, case.dilation, case.groups)


# ---------------------------------------------------------------------------------------------- timing

def paired_times(fa: Callable[[], object], fb: Callable[[], object], reps: int,
                 warmup: int = 1) -> tuple[float, float, float]:
    """Median ms of ``fa`` and ``fb`` run alternately, and the median of the per-pair ratios a/b."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb, ratios = [], [], []
    for i in range(reps):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        t = [0.0, 0.0]
        for j in order:
            f = fa if j == 0 else fb
            t0 = time.perf_counter()
            f()
            t[j] = time.perf_counter() - t0
        ta.append(t[0])
        tb.append(t[1])
        ratios.append(t[0] / max(t[1], 1e-12))
    return float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3, float(np.median(ratios))


# ------------------------------------------------------------------------------------------- running it

def _geometry(case: Case, x, w, b):
    return make_geometry(x, w, b, case.stride, case.padding, case.dilation, case.groups)


def check_case(case: Case, *, time_reps: int = 0, seed: int = 0) -> list[Result]:
    """Compare the Numba result (and gradients when ``case.grad``) with a float64 torch reference."""
    x, w, b = make_inputs(case, seed)
    dt = _dtype(case)
    geo = _geometry(case, x, w, b)
    fn = _numba_fn(case)
    xr = x.double().requires_grad_(case.grad)
    wr = w.double().requires_grad_(case.grad)
    br = None if b is None else b.double().requires_grad_(case.grad)
    ref = _torch_fn(case)(xr, wr, br)
    results = []
    if case.grad:
        xn = x.clone().requires_grad_(True)
        wn = w.clone().requires_grad_(True)
        bn = None if b is None else b.clone().requires_grad_(True)
        if case.blur:  # filter2d: its kernel is not a leaf we compare; check input gradient only
            wn.requires_grad_(False)
        out = fn(xn, wn, bn)
    else:
        with torch.no_grad():
            out = fn(x, w, b)
    n_fwd = geo.Cg * geo.KH * geo.KW
    err = _max_err(out.detach(), ref.detach())
    tol = tolerance(ref.detach(), n_fwd, dt)
    r = Result(case.name, case.shape, "forward", err, tol, err <= tol)
    if time_reps:
        tf = _torch_fn(case)
        with torch.no_grad():
            r.numba_ms, r.torch_ms, r.ratio = paired_times(lambda: fn(x, w, b), lambda: tf(x, w, b), time_reps, 0)
        r.gflops = K.conv_flops(geo) / (r.numba_ms * 1e6)
    results.append(r)
    if case.grad:
        gen = torch.Generator().manual_seed(seed + 1)
        gy = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
        ref_grads = torch.autograd.grad(ref, [t for t in (xr, wr, br) if t is not None], gy)
        got_grads = torch.autograd.grad(out, [t for t in (xn, wn, bn) if t is not None and t.requires_grad],
                                        gy.to(dt))
        positions = geo.N * geo.OH * geo.OW
        taps_back = geo.CoutG * math.ceil(geo.KH / geo.stride[0]) * math.ceil(geo.KW / geo.stride[1])
        parts = [("grad_input", taps_back)]
        if not case.blur:
            parts.append(("grad_weight", positions))
            if b is not None:
                parts.append(("grad_bias", positions))
        for (part, n_terms), g_ref, g_got in zip(parts, ref_grads, got_grads):
            e = _max_err(g_got, g_ref)
            t = tolerance(g_ref, n_terms, dt)
            results.append(Result(case.name, case.shape, part, e, t, e <= t))
    return results


def bench_case(case: Case, *, reps: int = 9, check: bool = True) -> list[Result]:
    """Forward and backward (all three gradients) timings, numba vs torch, paired; plus an accuracy check."""
    x, w, b = make_inputs(case)
    geo = _geometry(case, x, w, b)
    flops = K.conv_flops(geo)
    fwd_err = fwd_tol = None
    ok = True
    if check:
        chk = check_case(Case(**{**asdict(case), "grad": False}))
        fwd_err, fwd_tol, ok = chk[0].max_abs_error, chk[0].tolerance, chk[0].passed
    fn, tf = _numba_fn(case), _torch_fn(case)
    with torch.no_grad():
        nm, tm, ratio = paired_times(lambda: fn(x, w, b), lambda: tf(x, w, b), reps)
    fwd = Result(case.name, case.shape, "forward", fwd_err, fwd_tol, ok, nm, tm, ratio, flops / (nm * 1e6))
    # backward only: numba grad-input + grad-weight + grad-bias from a saved forward; torch's convolution_backward
    _, saved = forward_numpy(x, w, b, geo)
    gy = torch.randn((geo.N, geo.Cout, geo.OH, geo.OW), dtype=x.dtype)
    need_b = b is not None
    if case.blur:
        raise ValueError("bench_case does not time filter2d cases")
    pad = geo.pad
    if pad[0] != pad[1] or pad[2] != pad[3]:
        raise ValueError(f"bench_case needs symmetric padding, got {case.padding!r}")

    def numba_bwd():
        return backward_numpy(gy, w, saved, (True, True, need_b))

    def torch_bwd():
        return torch.ops.aten.convolution_backward(gy, x, w, [geo.Cout] if need_b else None, list(geo.stride),
                                                   [pad[0], pad[2]], list(geo.dilation), False, [0, 0],
                                                   geo.groups, [True, True, need_b])

    err = tol = None
    if check:
        gx, gw, gb = numba_bwd()
        rx, rw, rb = torch.ops.aten.convolution_backward(
            gy.double(), x.double(), w.double(), [geo.Cout] if need_b else None, list(geo.stride),
            [pad[0], pad[2]], list(geo.dilation), False, [0, 0], geo.groups, [True, True, need_b])
        positions = geo.N * geo.OH * geo.OW
        pairs = [(gx, rx, geo.CoutG * geo.KH * geo.KW), (gw, rw, positions)]
        if need_b:
            pairs.append((gb, rb, positions))
        ratios = [(_max_err(a, r), tolerance(r, n, x.dtype)) for a, r, n in pairs]
        worst = max(ratios, key=lambda et: et[0] / et[1])
        err, tol = worst
        ok = all(e <= t for e, t in ratios)
    nm, tm, ratio = paired_times(numba_bwd, torch_bwd, reps)
    bwd = Result(case.name, case.shape, "backward", err, tol, ok, nm, tm, ratio, 2 * flops / (nm * 1e6),
                 note="grad-input + grad-weight" + (" + grad-bias" if need_b else ""))
    return [fwd, bwd]


def set_all_threads(n: int | None) -> int:
    """Make torch and Numba use the same number of threads (so they never oversubscribe the cores)."""
    if n is not None:
        if n < 1:
            from cnntool.errors import ConfigError

            raise ConfigError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    return K.set_threads(torch.get_num_threads())


def run_suite(*, quick: bool = False, check: bool = True, bench: bool = True, threads: int | None = None,
              reps: int | None = None, progress: Callable[[str], None] | None = None,
              cases: Iterable[Case] | None = None) -> SuiteReport:
    """Run the conformance cases (``check``) and/or the a-e benchmark (``bench``); never raises on a failure."""
    with warnings.catch_warnings():
        # torch's reference warns that padding='same' with an even kernel copies the input; that is expected here
        warnings.filterwarnings("ignore", message="Using padding='same'")
        return _run_suite(quick=quick, check=check, bench=bench, threads=threads, reps=reps, progress=progress,
                          cases=cases)


def _run_suite(*, quick, check, bench, threads, reps, progress, cases) -> SuiteReport:
    t0 = time.perf_counter()
    report = SuiteReport(threads=set_all_threads(threads),
                         mode="quick" if quick else ("bench" if not check else ("check" if not bench else "full")))
    if check:
        todo = list(cases) if cases is not None else conformance_cases(quick)
        for case in todo:
            if progress:
                progress(case.name)
            report.results.extend(check_case(case, time_reps=1))
    if bench:
        bench_reps = reps or (3 if quick else 11)
        for case in BENCH_CASES:
            if quick:
                n, c, h, _ = case.x
                case = Case(**{**asdict(case), "x": (1, c, h // 2, h // 2) if n == 4 else (16, c, h, h)})
            if progress:
                progress(f"bench {case.name}")
            report.results.extend(bench_case(case, reps=bench_reps))
    report.seconds = time.perf_counter() - t0
    return report
