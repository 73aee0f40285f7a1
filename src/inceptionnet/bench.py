"""The benchmark behind ``inceptionnet bench``: images/s (or training steps/s) of this project's fast
paths vs torchvision's model, its peers (ONNX Runtime, OpenVINO on torchvision's plain export) and
torch.compile, in one process with the same weights, input and threads.

- the rows: ``INFER_BACKENDS`` / ``TRAIN_BACKENDS``; every row but the torchvision ones
  (``TV_ROWS``) is a record of ``deploy.backends`` (ours) or its peer form (``PEERS``, ``tv-`` + the
  candidate); ``default_backends`` leaves out the slow ones, missing packages and emulated bf16;
- the models: ours opened through ``checkpoint.ModelSource`` (random init after a fixed seed), the
  baseline torchvision's with the same weights (``open_bench_models``);
- the ceilings: a plain GEMM per dtype (``gemm_peak_gflops``) and ``deploy.probe.fma_peak``;
- ``run_bench(args, log) -> report`` (the ``--json`` object; its schema is in the docstring of
  ``inceptionnet.commands.bench``, the command that parses the flags and prints),
  ``summarize_results``, ``format_table`` / ``format_markdown`` / ``plot_report``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deploy.backends import Candidate, all_candidates
from .deploy.dtypes import DTYPE_TABLE, FP32
from .deploy.probe import CPU_FLAGS, cpu_info, fma_peak
from .errors import UsageError, first_line
from .runtime import quiet_output, time_fn

if TYPE_CHECKING:
    from .data import InputConfig

SCHEMA = 2  # 2: int8 rows, the OpenVINO / ORT-int8 peers, cpu flags, int8 and FMA ceilings, summary
# torchvision's own model in PyTorch (the baseline rows); every other row comes from deploy.backends
TV_ROWS = ("tv-eager", "tv-channels-last", "tv-compile")
SLOW_TV_ROWS = ("tv-compile",)  # torch.compile: a minute or more each
PEER_PREFIX = "tv-"  # a peer row: "tv-" + a candidate of a backend with a peer form
PEERS = tuple(PEER_PREFIX + str(c) for c in all_candidates() if c.record.peer)
INFER_BACKENDS = (*TV_ROWS, *PEERS, *(str(c) for c in all_candidates()))
TRAIN_BACKENDS = ("tv-train-fp32", "train-fast")
CALIBRATION_IMAGES = 16  # random images, the same for every int8 row (random weights: no real images fit)
TORCHVISION = {"googlenet": "googlenet", "inception_v3": "inception_v3"}
GEMM_N = 2048


def row_candidate(row: str) -> Candidate | None:
    """The (backend, dtype) an inference row runs, ours or its peer's; None for the torchvision rows."""
    if row in TV_ROWS or row in TRAIN_BACKENDS:
        return None
    return Candidate.parse(row.removeprefix(PEER_PREFIX))


def default_backends(mode: str) -> list[str]:
    from .runtime import bf16_supported

    if mode == "train":
        return list(TRAIN_BACKENDS)
    native_bf16 = bf16_supported()

    def wanted(row: str) -> bool:
        c = row_candidate(row)
        if c is None:
            return row not in SLOW_TV_ROWS
        dt = DTYPE_TABLE[c.dtype]
        return not c.record.slow and (not dt.needs_native or native_bf16) and c.record.available()

    return [b for b in INFER_BACKENDS if wanted(b)]


def resolve_backends(mode: str, backends: Sequence[str] | None = None) -> list[str]:
    """The rows to run (``backends``, or the default ones), the baseline first (every ratio needs it);
    an unknown row is a ``UsageError`` naming the choices."""
    allowed = TRAIN_BACKENDS if mode == "train" else INFER_BACKENDS
    rows = list(backends or default_backends(mode))
    bad = [b for b in rows if b not in allowed]
    if bad:
        raise UsageError(f"unknown {mode} backend(s) {', '.join(bad)}; choose from {', '.join(allowed)}")
    baseline = "tv-train-fp32" if mode == "train" else "tv-eager"
    if baseline in rows:
        rows.remove(baseline)
    rows.insert(0, baseline)
    return rows


# --------------------------------------------------------------------------------------------------
# Timing


def gemm_peak_gflops(dtype: torch.dtype, n: int = GEMM_N, repeats: int = 7) -> float:
    """GFLOP/s of a plain n x n x n matmul (2 n^3 FLOPs), best of ``repeats`` (best, not median: it is
    a reference for what the GEMM can reach; with 3 repeats it measured 115 to 184 GFLOP/s fp32 in
    three runs on one machine). ``torch.int8``: ``torch._int_mm`` (int8 x int8 -> int32 through
    oneDNN/MKL's integer GEMM), in GOP/s."""
    if dtype == torch.int8:
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
        fn: Callable[[], Any] = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        fn = lambda: torch.mm(a, b)  # noqa: E731
    times = time_fn(fn, warmup=2, repeats=repeats, min_repeat_s=0.0)
    return 2 * n**3 / min(times) / 1e9


# --------------------------------------------------------------------------------------------------
# Models


def open_bench_models(
    name: str, num_classes: int, seed: int = 0
) -> tuple[nn.Module, nn.Module, str, InputConfig]:
    """(this project's model, the baseline model with the same weights, the baseline's source, our
    model's input config). Ours is opened through ``checkpoint.open_model`` (no weights: random init
    after ``torch.manual_seed(seed)``, the same parameters ``create_model`` gives after that seed);
    the baseline is torchvision's model where it has one (``TORCHVISION``), else a copy of ours."""
    from .checkpoint import ModelSource, open_model

    torch.manual_seed(seed)
    ours, icfg, _, _ = open_model(ModelSource.model(name, num_classes=num_classes))
    if name in TORCHVISION:
        import torchvision

        ctor = getattr(torchvision.models, TORCHVISION[name])
        tv = ctor(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes)
        tv.load_state_dict(ours.state_dict())
        return ours, tv.eval(), "torchvision", icfg
    return ours, copy.deepcopy(ours), "inceptionnet", icfg


def build_models(name: str, num_classes: int, seed: int = 0) -> tuple[nn.Module, nn.Module, str]:
    """(this project's model, the baseline model with the same weights, the baseline's source)."""
    ours, base, source, _ = open_bench_models(name, num_classes, seed)
    return ours, base, source


def model_gflops(model: nn.Module, size: int) -> float:
    """GFLOPs of one image (2 x MACs)."""
    from .analysis import summarize

    return 2 * summarize(copy.deepcopy(model).eval(), input_size=(size, size))["total_macs"] / 1e9


_PLAIN_EXPORTS: dict[tuple[int, tuple[int, ...]], bytes] = {}


def _peer_fn(
    cand: Candidate, base: nn.Module, x: Tensor, calib: Tensor, quiet: bool
) -> tuple[Callable[[Tensor], Tensor], str]:
    """The peer form of ``cand``'s backend (``Backend.peer``: ONNX Runtime, OpenVINO ...) on torchvision's
    plain export (no graph work of ours), configured as its docs recommend; every int8 row calibrated on
    the same random images."""
    from .deploy.export import export_model

    peer = cand.record.peer
    assert peer is not None, cand
    with tempfile.TemporaryDirectory(prefix="inceptionnet-bench-") as tmp:
        key = (id(base), tuple(x.shape[1:]))  # one export per model and input size for all peer rows
        if key not in _PLAIN_EXPORTS:
            _PLAIN_EXPORTS.clear()
            onnx_path = Path(tmp) / "plain.onnx"
            export_model(
                copy.deepcopy(base).eval(), onnx_path, input_size=(int(x.shape[2]), int(x.shape[3])),
                in_chans=int(x.shape[1]), quiet=quiet,
            )  # fmt: skip
            _PLAIN_EXPORTS[key] = onnx_path.read_bytes()
        path = Path(tmp) / "plain.onnx"
        path.write_bytes(_PLAIN_EXPORTS[key])
        return peer(path, cand.dtype, int(x.shape[0]), calib, Path(tmp))


def _tv_fn(backend: str, base: nn.Module) -> tuple[Callable[[Tensor], Tensor], str]:
    """torchvision's model in PyTorch: eager NCHW (the baseline), channels_last, torch.compile."""
    from .runtime import flush_denormal

    cl = backend != "tv-eager"
    base = copy.deepcopy(base).eval()
    mod: Callable[..., Any] = base
    if cl:
        mod = base.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if backend == "tv-compile":
        mod = torch.compile(mod)
    fmt = torch.channels_last if cl else torch.contiguous_format

    def run(inp: Tensor) -> Tensor:
        with torch.inference_mode(), flush_denormal():
            out = mod(inp.contiguous(memory_format=fmt))
        assert isinstance(out, Tensor)
        return out

    return run, "fp32 " + ("channels_last" if cl else "NCHW") + (
        ", torch.compile" if backend == "tv-compile" else ""
    )


def _infer_fn(
    backend: str, ours: nn.Module, base: nn.Module, x: Tensor, quiet: bool, calib: Tensor | None = None
) -> tuple[Callable[[Tensor], Tensor], str]:
    """The callable of one inference row and a note of what it runs."""
    from .deploy.fast import optimize_for_inference

    cand = row_candidate(backend)
    if cand is None:
        return _tv_fn(backend, base)
    if calib is None:
        calib = torch.randn(CALIBRATION_IMAGES, *x.shape[1:], generator=torch.Generator().manual_seed(1))
    used = calib if DTYPE_TABLE[cand.dtype].calibrated else None
    with quiet_output(quiet):
        if backend in PEERS:
            return _peer_fn(cand, base, x, calib, quiet)
        fast = optimize_for_inference(
            ours, x, backend=cand.backend, dtype=cand.dtype, quiet=quiet, calibration=used
        )
    note = f"merged {fast.merged_convs} 1x1 convs" if fast.merged_convs else "BN folded, no 1x1 merge"
    if cand.record.describe is not None:
        note += ", " + cand.record.describe(int(x.shape[0]))
    if cand.dtype != FP32:
        note += f", top-1 agreement {fast.top1_agreement:.3f} (random weights: not meaningful)"
    return fast, note


def _train_step_fn(
    backend: str, ours: nn.Module, base: nn.Module, x: Tensor, num_classes: int
) -> tuple[Callable[[], None], str]:
    from .runtime import bf16_supported

    target = torch.randint(0, num_classes, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    if backend == "tv-train-fp32":
        model = copy.deepcopy(base).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=False)
        inp = x

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = model(inp)
            F.cross_entropy(out, target).backward()
            opt.step()

        return step, "fp32 NCHW, SGD for-loop"
    model = copy.deepcopy(ours).train().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    inp = x.contiguous(memory_format=torch.channels_last)
    amp = bf16_supported(x.device)
    try:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
        kind = "fused"
    except (RuntimeError, ValueError):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
        kind = "foreach"
    ctx: Callable[[], contextlib.AbstractContextManager[Any]] = (
        (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    )

    def step_fast() -> None:
        opt.zero_grad(set_to_none=True)
        with ctx():
            out = model(inp)
        F.cross_entropy(out.float(), target).backward()
        opt.step()

    return step_fast, f"{'bf16 autocast' if amp else 'fp32 (no native bf16)'}, channels_last, {kind} SGD"


# --------------------------------------------------------------------------------------------------
# Running


def _row(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(
        (
            "median_s",
            "min_s",
            "img_per_s",
            "ratio_vs_tv_eager",
            "gflops",
            "pct_of_peak",
            "setup_s",
            "max_abs_diff",
        )
    )
    row.update(status="ok", note="")
    row.update(kw)
    return row


def run_bench(args: argparse.Namespace, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The benchmark as a dict (the ``--json`` schema of ``inceptionnet.commands.bench``). ``args``: the
    command's settings (models, batch_sizes, input_size, mode, repeats, warmup, backends, num_classes,
    threads, debug), checked by the command; ``log`` gets one line per step."""
    from .runtime import bf16_supported

    say = log or (lambda _: None)
    backends = resolve_backends(args.mode, args.backends)
    if args.threads:
        torch.set_num_threads(args.threads)
    native_bf16 = bf16_supported()
    cpu = cpu_info()
    say(f"CPU: {cpu['model']}; flags: {' '.join(cpu['flags']) or 'none of ' + ', '.join(CPU_FLAGS)}")
    say("timing a 2048x2048 GEMM for the peak reference")
    infer = args.mode == "infer"
    peak = {
        "float32": gemm_peak_gflops(torch.float32),
        "bfloat16": gemm_peak_gflops(torch.bfloat16) if native_bf16 else None,  # emulated bf16: no peak
        "int8": gemm_peak_gflops(torch.int8) if infer else None,
    }
    fma = _fma_peak(say) if infer else None
    run = _Bench(args, backends, peak, native_bf16, say)
    results: list[dict[str, Any]] = []
    for name in args.models:
        results += _bench_model(run, name)
    return {
        "schema": SCHEMA,
        "mode": args.mode,
        "env": _env(native_bf16, cpu),
        "config": {
            "models": list(args.models),
            "batch_sizes": list(args.batch_sizes),
            "input_size": args.input_size,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "backends": backends,
        },
        "peak_gflops": peak,
        "fma_peak": fma,
        "results": results,
        "summary": summarize_results(results),
    }


def _fma_peak(say: Callable[[str], None]) -> dict[str, float] | None:
    """``deploy.probe.fma_peak`` on torch's threads; when it cannot run, one line on stderr says why
    (with --json too: stdout stays the JSON)."""
    say("running fma_peak.c for the instruction ceilings")
    fma, why = fma_peak(torch.get_num_threads())
    if fma is None:
        print(f"note: the FMA instruction ceiling is unavailable: {why}", file=sys.stderr, flush=True)
    return fma


def _env(native_bf16: bool, cpu: dict[str, Any]) -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "bf16_native": native_bf16,
        "cpu_model": cpu["model"],
        "cpu_flags": cpu["flags"],
        "openvino": _version("openvino"),
        "nncf": _version("nncf"),
    }


def _row_dtype(backend: str, native_bf16: bool) -> str:
    if backend == "train-fast" and native_bf16:
        return "bfloat16"
    cand = row_candidate(backend)
    return cand.dtype if cand is not None else FP32


@dataclass
class _Bench:
    """One run's settings and ceilings, shared by every model's rows."""

    args: argparse.Namespace
    backends: Sequence[str]  # the baseline first
    peak: dict[str, float | None]
    native_bf16: bool
    say: Callable[[str], None]


@dataclass
class _Model:
    """One model under test: ours, the baseline, the input size and the FLOPs of one image (step)."""

    name: str
    source: str
    ours: nn.Module
    base: nn.Module
    size: int
    gflop: float
    fns: dict[str, Any] = field(default_factory=dict)  # built row callables, kept across batch sizes


def _bench_model(run: _Bench, name: str) -> list[dict[str, Any]]:
    """The rows of one model: every backend at every batch size, the baseline first."""
    args = run.args
    ours, base, source, icfg = open_bench_models(name, args.num_classes)
    size = args.input_size or icfg.input_size
    gflop = model_gflops(ours, size) * (3 if args.mode == "train" else 1)
    m = _Model(name, source, ours, base, size, gflop)
    rows: list[dict[str, Any]] = []
    prev_bs = 0
    for bs in args.batch_sizes:
        x = torch.randn(bs, icfg.in_chans, size, size, generator=torch.Generator().manual_seed(bs))
        rows += _bench_batch(run, m, x, prev_bs)
        prev_bs = bs
    return rows


def _bench_batch(run: _Bench, m: _Model, x: Tensor, prev_bs: int) -> list[dict[str, Any]]:
    """The rows of one batch size; ratios and ``max_abs_diff`` against the first (baseline) row."""
    args, bs = run.args, int(x.shape[0])
    ref: list[Tensor] = []  # the first row's output: every later row's max_abs_diff is against it
    base_ips: float | None = None
    rows: list[dict[str, Any]] = []
    for backend in run.backends:
        dtype = _row_dtype(backend, run.native_bf16)
        common = dict(
            model=m.name, source=m.source, backend=backend, dtype=dtype, batch_size=bs, input_size=m.size
        )
        run.say(f"{m.name} {m.size}x{m.size} batch {bs}: {backend}")
        try:
            t0 = time.perf_counter()
            call, note, diff = _row_call(args, backend, m.ours, m.base, x, m.fns, prev_bs, ref)
            setup = time.perf_counter() - t0
            times = time_fn(call, args.warmup, args.repeats)
        except Exception as e:
            if args.debug:
                raise
            msg = first_line(e)
            rows.append(_row(**common, status="error", note=msg[:300]))
            run.say(f"  error: {msg[:200]}")
            continue
        med, best = statistics.median(times), min(times)
        ips = bs / med
        if backend == run.backends[0]:
            base_ips = ips
        achieved = m.gflop * bs / med
        pk = run.peak.get(dtype)
        rows.append(_row(
            **common, median_s=med, min_s=best, img_per_s=ips,
            ratio_vs_tv_eager=ips / base_ips if base_ips else None, gflops=achieved,
            pct_of_peak=100 * achieved / pk if pk else None, setup_s=setup, max_abs_diff=diff, note=note,
        ))  # fmt: skip
        run.say(f"  {ips:.1f} img/s (median {med * 1e3:.1f} ms, min {best * 1e3:.1f} ms)")
    return rows


def _row_call(
    args: argparse.Namespace,
    backend: str,
    ours: nn.Module,
    base: nn.Module,
    x: Tensor,
    fns: dict[str, Any],
    prev_bs: int,
    ref: list[Tensor],
) -> tuple[Callable[[], Any], str, float | None]:
    """What one row times, its note, and (inference) its max abs diff against the first row's output."""
    if args.mode == "train":
        step, note = _train_step_fn(backend, ours, base, x, args.num_classes)
        return step, note, None
    # built once per model (dynamic batch, checked on the first input); a backend with per_batch
    # (OpenVINO: its performance hint depends on the batch) once per batch size
    bs = int(x.shape[0])
    cand = row_candidate(backend)
    key = f"{backend}@{bs}" if cand is not None and cand.record.per_batch else backend
    if key not in fns:
        fns.pop(f"{backend}@{prev_bs}", None)  # free the previous batch's engine
        fns[key] = _infer_fn(backend, ours, base, x, quiet=not args.debug)
    fn, note = fns[key]
    out = fn(x).float()
    if not ref:
        ref.append(out)
    return functools.partial(fn, x), note, float((out - ref[0]).abs().max())


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------------
# Reporting


def summarize_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, input, batch): our fastest row vs the fastest peer row (ONNX Runtime / OpenVINO on
    torchvision's export), overall and in bf16. Ratios are None where a side has no row."""

    def best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        return max(rows, key=lambda r: r["img_per_s"]) if rows else None

    out = []
    keys = dict.fromkeys((r["model"], r["input_size"], r["batch_size"]) for r in results)
    for model, size, batch in keys:
        rows = [r for r in results if (r["model"], r["input_size"], r["batch_size"]) == (model, size, batch)
                and r["status"] == "ok"]  # fmt: skip
        ours = [r for r in rows if not r["backend"].startswith("tv-")]
        peers = [r for r in rows if r["backend"] in PEERS]
        entry: dict[str, Any] = {"model": model, "input_size": size, "batch_size": batch}
        for tag, sel in (("", lambda r: True), ("_bf16", lambda r: r["dtype"] == "bfloat16")):
            o, p = best([r for r in ours if sel(r)]), best([r for r in peers if sel(r)])
            entry[f"best_ours{tag}"] = o["backend"] if o else None
            entry[f"best_peer{tag}"] = p["backend"] if p else None
            entry[f"ratio{tag}"] = o["img_per_s"] / p["img_per_s"] if o and p else None
        out.append(entry)
    return out


def format_table(report: dict[str, Any]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = f"{'model':<14} {'size':>4} {'batch':>5} {'backend':<17} {'dtype':<8} {'img/s':>8} {'median ms':>10} {'min ms':>8} {'x tv':>6} {'% peak':>6}  note"
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(
                f"{r['model']:<14} {r['input_size']:>4} {r['batch_size']:>5} {r['backend']:<17} {r['dtype']:<8} error: {r['note']}"
            )
            continue
        lines.append(
            f"{r['model']:<14} {r['input_size']:>4} {r['batch_size']:>5} {r['backend']:<17} {r['dtype']:<8} "
            f"{f(r['img_per_s'], '8.1f')} {f(r['median_s'] * 1e3, '10.1f')} {f(r['min_s'] * 1e3, '8.1f')} "
            f"{f(r['ratio_vs_tv_eager'], '6.2f')} {f(r['pct_of_peak'], '6.1f')}  {r['note']}"
        )
    return "\n".join(lines + _table_footer(report))


def _table_footer(report: dict[str, Any]) -> list[str]:
    """The ceilings, the environment and the summary under the table."""
    lines: list[str] = []
    pk = report["peak_gflops"]
    env = report["env"]
    lines.append(
        f"GEMM peak: fp32 {pk['float32']:.0f} GFLOP/s" + (f", bf16 {pk['bfloat16']:.0f}" if pk["bfloat16"] else "")
        + (f", int8 {pk['int8']:.0f} GOP/s (torch._int_mm)" if pk.get("int8") else "")
        + f"; torch {env['torch']}, onnxruntime {env['onnxruntime']}, openvino {env.get('openvino')}, "
        + f"{env['threads']} threads, native bf16: {env['bf16_native']}; 'x tv' = img/s / the tv-eager (or tv-train-fp32) row"
    )  # fmt: skip
    lines.append(f"CPU: {env.get('cpu_model')}; flags: {' '.join(env.get('cpu_flags') or []) or '-'}")
    fma = report.get("fma_peak")
    if fma:
        lines.append(
            f"instruction ceilings (fma_peak.c, {fma.get('threads', 0):.0f} threads): fp32 FMA "
            f"{fma.get('fp32_fma_gflops', 0):.0f} GFLOP/s, bf16 dot {fma.get('bf16_dot_gflops', 0):.0f}, "
            f"int8 VNNI {fma.get('int8_vnni_gops', 0):.0f} GOP/s"
        )
    for e in report.get("summary", []):
        if e["ratio"] is not None:
            line = f"{e['model']} {e['input_size']} batch {e['batch_size']}: best ours {e['best_ours']} = {e['ratio']:.2f}x best peer {e['best_peer']}"
            if e["ratio_bf16"] is not None:
                line += f"; bf16: {e['best_ours_bf16']} = {e['ratio_bf16']:.2f}x {e['best_peer_bf16']}"
            lines.append(line)
    return lines


MARKDOWN_HEADER = (
    "| model (input) | batch | backend | dtype | img/s | median ms | min ms | x tv eager | % peak |"
)
MAX_REPORT_BYTES = 16 << 20  # a bench.json larger than this was not written by bench


def written_by_bench(path: Path) -> bool:
    """Is ``path`` (an existing regular file) a bench.json / bench.md / bench.png that bench wrote,
    recognised by its content: the report's keys, the table's header, the figure's Software chunk?"""
    import json

    from .fileio import is_our_png

    if path.suffix == ".png":
        return is_our_png(path)
    if path.stat().st_size > MAX_REPORT_BYTES:
        return False
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".md":
            return text.startswith(MARKDOWN_HEADER)
        report = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(report, dict) and {"mode", "env", "results"} <= report.keys()


def format_markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table (docs/BENCHMARKS.md is made of these)."""

    def f(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    lines = [MARKDOWN_HEADER, "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        name = f"{r['model']} ({r['input_size']})"
        if r["status"] != "ok":
            lines.append(
                f"| {name} | {r['batch_size']} | {r['backend']} | {r['dtype']} | error: {r['note']} | | | | |"
            )
            continue
        lines.append(
            f"| {name} | {r['batch_size']} | {r['backend']} | {r['dtype']} | {f(r['img_per_s'], '.1f')} | "
            f"{f(r['median_s'] * 1e3, '.1f')} | {f(r['min_s'] * 1e3, '.1f')} | "
            f"{f(r['ratio_vs_tv_eager'], '.2f')} | {f(r['pct_of_peak'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Bar chart: img/s per backend, one panel per (model, batch size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .fileio import atomic_save_figure

    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in report["results"]:
        if r["status"] == "ok":
            groups.setdefault((r["model"], r["input_size"], r["batch_size"]), []).append(r)
    n = max(len(groups), 1)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, ((model, size, batch), rows) in zip(axes[0], groups.items()):
        labels = [r["backend"] for r in rows]
        vals = [r["img_per_s"] for r in rows]
        colors = ["tab:gray" if r["source"] != "inceptionnet" and r["backend"].startswith("tv") else "tab:blue"
                  for r in rows]  # fmt: skip
        ax.barh(labels, vals, color=colors)
        for i, r in enumerate(rows):
            ax.text(
                vals[i], i, f" {vals[i]:.0f} ({r['ratio_vs_tv_eager'] or 0:.1f}x)", va="center", fontsize=8
            )
        ax.invert_yaxis()
        ax.set(xlabel="img/s", title=f"{model} {size}px, batch {batch} ({report['mode']})")
        ax.set_xlim(0, max(vals) * 1.35)
    fig.suptitle(f"torch {report['env']['torch']}, {report['env']['threads']} threads; gray: torchvision")
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)
