#!/usr/bin/env python3
"""Inference benchmark: torch eager vs onnxruntime on CPU, and `cnntool predict` end to end.

    python scripts/bench_infer.py            # simplecnn 32×32 and tv:resnet18 224×224
    python scripts/bench_infer.py --quick    # fewer repeats
    python scripts/bench_infer.py --json     # one JSON object on stdout

1. Latency at batch 1 (median ms) and throughput at batch 64 (images/s) for simplecnn at 32×32 and
   tv:resnet18 at 224×224 (random weights, 10 classes), same thread count for both runtimes.
2. Whole-process wall time of `cnntool predict model.onnx one.jpg` vs the same prediction from the
   torch checkpoint (`cnntool predict model.pt one.jpg`), median of several fresh processes.

Targets: onnxruntime throughput >= torch eager; the ONNX predict process >= 4× faster than the torch one.

    python scripts/bench_infer.py --deploy   # INT8 goals through `cnntool benchmark`'s library call
    python scripts/bench_infer.py --predict-vs-script [--threads 1 --repeats 5]

3. ``--deploy``: ONNX INT8 vs FP32 (``cnntool.export.benchmark``) for tv:resnet18 at 224×224 (random
   weights) and a simplecnn trained 3 epochs on digits. Goals: INT8 >= 1.5× FP32 onnxruntime throughput
   at batch 32 (resnet18); on digits, INT8 top-1 agreement with FP32 >= 99% and test-accuracy drop <= 1
   point (the accuracy gate of `cnntool export --int8`).

4. ``--predict-vs-script``: `cnntool predict digits.onnx DIR --json --threads T` vs a minimal script (onnxruntime +
   Pillow + numpy, metadata read through onnxruntime, T threads, batch 32; MINIMAL_SCRIPT below) over the same
   3,000 digits PNGs (sklearn's 8×8 digits, a simplecnn trained 1 epoch), as whole processes, interleaved
   repeats, medians; and both on one image (start-up-dominated latency). Goal: cnntool >= 0.9 of the
   script's files/s, and one-image latency within 1/0.9 of the script's. The load average is printed with
   the table (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from cnntool.export.onnx_export import export_model, export_onnx
from cnntool.spec import ModelSpec
from cnntool.training.checkpoint import build_from_spec, save_checkpoint

MODELS = [("simplecnn", 32), ("tv:resnet18", 224)]


def spec_for(arch: str, size: int) -> ModelSpec:
    return ModelSpec(arch=arch, num_classes=10, class_names=[f"c{i}" for i in range(10)], in_channels=3,
                     input_size=[size, size], mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def timed(fn, repeats: int, warmup: int) -> float:
    """Median seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_model(arch: str, size: int, folder: Path, threads: int, quick: bool) -> dict:
    spec = spec_for(arch, size)
    torch.manual_seed(0)
    model = build_from_spec(spec).eval()
    path = folder / f"{arch.replace(':', '_')}.onnx"
    export_model(model, spec, path)  # includes the parity check
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    big = arch.startswith("tv:")
    lat_reps = (10 if quick else 30) if big else (50 if quick else 200)
    thr_reps = (2 if quick else 5) if big else (10 if quick else 30)
    out = {"model": arch, "input": f"{size}×{size}"}
    for batch, reps, key in ((1, lat_reps, "latency_ms_b1"), (64, thr_reps, "images_per_s_b64")):
        x = torch.randn(batch, 3, size, size)
        xn = x.numpy()
        with torch.inference_mode():
            t_torch = timed(lambda: model(x), reps, 2 if big else 5)
        t_ort = timed(lambda: session.run(None, {name: xn}), reps, 2 if big else 5)
        if batch == 1:
            out[key] = {"torch": t_torch * 1e3, "onnxruntime": t_ort * 1e3}
        else:
            out[key] = {"torch": batch / t_torch, "onnxruntime": batch / t_ort}
    return out


def bench_process(folder: Path, runs: int) -> dict:
    """`cnntool predict` as a fresh process: ONNX file vs torch checkpoint, same model and image."""
    spec = spec_for("simplecnn", 32)
    torch.manual_seed(0)
    ckpt = folder / "simplecnn.pt"
    save_checkpoint(ckpt, {"spec": spec.to_dict(), "model": build_from_spec(spec).state_dict()})
    onnx_path = folder / "simplecnn_e2e.onnx"
    export_onnx(ckpt, onnx_path)
    img = folder / "one.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(img)
    result = {}
    labels = {}
    for key, target in (("onnx", onnx_path), ("torch", ckpt)):
        cmd = [sys.executable, "-m", "cnntool", "predict", str(target), str(img), "--json", "-q"]
        times = []
        for i in range(runs + 1):
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            elapsed = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
            labels[key] = json.loads(proc.stdout.splitlines()[0])["label"]
            if i:  # the first run warms the file cache
                times.append(elapsed)
        result[key] = statistics.median(times)
    result["same_label"] = labels["onnx"] == labels["torch"]
    return result


def bench_deploy(folder: Path, threads: int, quick: bool, console: Console) -> list[tuple]:
    """(goal, measured, target, met) rows for the INT8 goals."""
    from cnntool.config import ModelConfig, RunConfig, TrainConfig
    from cnntool.export.benchmark import benchmark
    from cnntool.training import fit

    spec = spec_for("tv:resnet18", 224)
    torch.manual_seed(0)
    ckpt = folder / "resnet18.pt"
    save_checkpoint(ckpt, {"spec": spec.to_dict(), "model": build_from_spec(spec).state_dict()})
    console.print("benchmarking tv:resnet18 224×224: ONNX FP32 vs INT8 ...")
    r18 = benchmark(ckpt, threads=threads, repeats=2 if quick else 5, runtimes=("onnx-fp32", "onnx-int8"))
    speed = {r.runtime: r for r in r18.rows}["onnx-int8"].speedup_b32
    console.print("training simplecnn on digits (3 epochs) and exporting it with --int8 ...")
    run = fit(RunConfig(model=ModelConfig(bn=True, dropout=0.3), train=TrainConfig(epochs=3, seed=0),
                        runs_root=str(folder / "runs")))
    res = export_onnx(run["run_dir"], folder / "digits.onnx", precisions=("int8",), max_drop=100.0)
    v = res.variants[0]
    return [("resnet18 INT8 ÷ FP32 img/s, batch 32", f"{speed:.2f}×", "≥ 1.5×", speed >= 1.5),
            ("digits INT8 top-1 agreement with FP32", f"{v.agreement:.2%}", "≥ 99%", v.agreement >= 0.99),
            ("digits INT8 test-accuracy drop", f"{v.drop:+.2f} points", "≤ 1 point", v.drop <= 1.0)]


MINIMAL_SCRIPT = r'''
import json, os, sys
import numpy as np
import onnxruntime as ort
from PIL import Image

model, folder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
spec = json.loads(session.get_modelmeta().custom_metadata_map["cnntool.spec"])
name = session.get_inputs()[0].name
h, w = spec["input_size"]
mode = "L" if spec["in_channels"] == 1 else "RGB"
mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
files = [folder] if os.path.isfile(folder) else sorted(
    os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".png"))
for i in range(0, len(files), 32):
    batch = files[i:i + 32]
    x = np.stack([np.asarray(Image.open(f).convert(mode).resize((w, h), Image.BILINEAR), np.uint8) for f in batch])
    x = x.reshape(len(batch), -1, h, w).astype(np.float32) / np.float32(255.0)
    logits = session.run(None, {name: (x - mean) / std})[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    for f, row in zip(batch, p):
        k = int(row.argmax())
        print(json.dumps({"path": f, "label": spec["class_names"][k], "prob": float(row[k])}))
'''
N_FILES = 3000


def predict_vs_script(folder: Path, threads: int, repeats: int, console: Console) -> dict:
    """Whole-process files/s and one-image seconds of `cnntool predict` and MINIMAL_SCRIPT (medians)."""
    from sklearn.datasets import load_digits

    from cnntool.config import ModelConfig, RunConfig, TrainConfig
    from cnntool.runner import fit

    console.print("training simplecnn on digits (1 epoch), exporting it, writing 3,000 PNGs ...")
    run = folder / "run"
    fit(RunConfig(model=ModelConfig(bn=True), train=TrainConfig(epochs=1, seed=0), out=str(run)))
    onnx_path = folder / "digits.onnx"
    export_onnx(run, onnx_path)
    pngs = folder / "pngs"
    pngs.mkdir()
    digits = np.clip(load_digits().images * 16, 0, 255).astype(np.uint8)
    for i in range(N_FILES):
        Image.fromarray(digits[i % len(digits)], "L").save(pngs / f"{i:05d}.png")
    one = pngs / "00000.png"
    script = folder / "minimal_predict.py"
    script.write_text(MINIMAL_SCRIPT)
    cmds = {
        "cnntool": lambda target: [sys.executable, "-m", "cnntool", "predict", str(onnx_path), str(target),
                                   "--json", "--threads", str(threads), "-q"],
        "script": lambda target: [sys.executable, str(script), str(onnx_path), str(target), str(threads)],
    }
    times: dict = {(k, t): [] for k in cmds for t in ("many", "one")}
    labels: dict = {}
    load = [os.getloadavg()[0]]
    for rep in range(repeats + 1):  # the first round warms the file cache and is not counted
        for target_key, target in (("many", pngs), ("one", one)):
            for key, cmd in cmds.items():
                t = time.perf_counter()
                proc = subprocess.run(cmd(target), capture_output=True, text=True, check=False)
                elapsed = time.perf_counter() - t
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd(target))} failed: {proc.stderr.strip()}")
                rows = [json.loads(line) for line in proc.stdout.splitlines()]
                want = N_FILES if target_key == "many" else 1
                if len(rows) != want:
                    raise SystemExit(f"{key} printed {len(rows)} predictions, not {want}")
                labels[key, target_key] = [(r["path"], r["label"]) for r in rows]
                if rep:
                    times[key, target_key].append(elapsed)
        load.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"threads": threads, "repeats": repeats, "files": N_FILES,
            "files_per_s": {k: N_FILES / med[k, "many"] for k in cmds},
            "one_image_s": {k: med[k, "one"] for k in cmds},
            "same_labels": labels["cnntool", "many"] == labels["script", "many"],
            "load_avg_1min": [round(x, 2) for x in load]}


def main_predict_vs_script(args) -> None:
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 110)
    with tempfile.TemporaryDirectory() as tmp:
        r = predict_vs_script(Path(tmp), args.threads, args.repeats, console)
    fps, lat = r["files_per_s"], r["one_image_s"]
    ratio, lat_ratio = fps["cnntool"] / fps["script"], lat["script"] / lat["cnntool"]
    r["ratio"], r["one_image_ratio"] = ratio, lat_ratio
    r["goal_met"] = ratio >= 0.9 and lat_ratio >= 0.9
    if args.json:
        print(json.dumps(r))
        return
    t = Table(title=f"cnntool predict vs a minimal onnxruntime script, {r['files']:,} digits PNGs, "
                    f"--threads {r['threads']}, whole processes, median of {r['repeats']}")
    for col in ("", "cnntool predict", "minimal script", "cnntool ÷ script", "goal", ""):
        t.add_column(col, justify="left" if col in ("", "goal") else "right")
    for name, a, b, q in (("files/s (3,000 files)", f"{fps['cnntool']:,.0f}", f"{fps['script']:,.0f}", ratio),
                          ("one image, s (speed ratio)", f"{lat['cnntool']:.3f}", f"{lat['script']:.3f}", lat_ratio)):
        t.add_row(name, a, b, f"{q:.2f}", "≥ 0.90", "[green]met[/green]" if q >= 0.9 else "[red]NOT met[/red]")
    console.print(t)
    console.print(f"same labels from both: {r['same_labels']}; 1-min load average during the run: "
                  f"{' → '.join(map(str, r['load_avg_1min']))} on {os.cpu_count()} cores")


def main_deploy(args) -> None:
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 100)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_deploy(Path(tmp), args.threads, args.quick, console)
    if args.json:
        print(json.dumps([{"goal": g, "measured": m, "target": t, "met": ok} for g, m, t, ok in rows]))
        return
    t = Table(title=f"INT8 deploy goals, {args.threads} thread(s); onnxruntime {ort.__version__}")
    for col in ("goal", "measured", "target", ""):
        t.add_column(col)
    for g, m, target, ok in rows:
        t.add_row(g, m, target, "[green]met[/green]" if ok else "[red]NOT met[/red]")
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both runtimes")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--process-runs", type=int, default=5, help="fresh processes per predict variant")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--deploy", action="store_true", help="INT8 goals (resnet18 speed-up, digits accuracy gate)")
    ap.add_argument("--predict-vs-script", action="store_true",
                    help="`cnntool predict` vs a minimal onnxruntime script on 3,000 PNGs (--threads default 1)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds for --predict-vs-script")
    args = ap.parse_args()
    if args.predict_vs_script:
        if "--threads" not in sys.argv:
            args.threads = 1
        main_predict_vs_script(args)
        return
    if args.deploy:
        main_deploy(args)
        return
    torch.set_num_threads(args.threads)
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 100)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for arch, size in MODELS:
            console.print(f"benchmarking {arch} at {size}×{size} ...")
            rows.append(bench_model(arch, size, folder, args.threads, args.quick))
        console.print("timing `cnntool predict` processes ...")
        proc = bench_process(folder, args.process_runs)

    env = {"torch": torch.__version__, "onnxruntime": ort.__version__, "threads": args.threads,
           "cpus": os.cpu_count()}
    targets = {
        "onnxruntime_throughput_ge_torch": all(r["images_per_s_b64"]["onnxruntime"] >= r["images_per_s_b64"]["torch"]
                                               for r in rows),
        "onnx_predict_process_4x_faster": proc["torch"] >= 4 * proc["onnx"],
    }
    if args.json:
        print(json.dumps({"environment": env, "models": rows, "predict_process_s": proc, "targets": targets}))
        return
    t = Table(title=f"CPU inference, {args.threads} thread(s); torch {env['torch']}, onnxruntime {env['onnxruntime']}")
    for col in ("model", "input", "torch b1 ms", "ort b1 ms", "torch b64 img/s", "ort b64 img/s", "ort÷torch"):
        t.add_column(col, justify="left" if col in ("model", "input") else "right")
    for r in rows:
        lat, thr = r["latency_ms_b1"], r["images_per_s_b64"]
        t.add_row(r["model"], r["input"], f"{lat['torch']:.2f}", f"{lat['onnxruntime']:.2f}", f"{thr['torch']:.0f}",
                  f"{thr['onnxruntime']:.0f}", f"{thr['onnxruntime'] / thr['torch']:.2f}×")
    console.print(t)
    p = Table(title="`cnntool predict MODEL one.jpg`, whole process (median wall time)")
    for col in ("model file", "seconds", "speed-up"):
        p.add_column(col)
    p.add_row("simplecnn.pt (torch)", f"{proc['torch']:.2f}", "1.00×")
    p.add_row("simplecnn.onnx (onnxruntime)", f"{proc['onnx']:.2f}", f"{proc['torch'] / proc['onnx']:.2f}×")
    console.print(p)
    console.print(f"same label from both: {proc['same_label']}")
    for name, ok in targets.items():
        console.print(f"target {name}: {'[green]met[/green]' if ok else '[red]NOT met[/red]'}")


if __name__ == "__main__":
    main()
