"""Text tables of every section, the verdicts, and the JSON file."""

from __future__ import annotations

from collections.abc import Sequence

from keras_deconvnet.benchmarks.backends import format_backends
from keras_deconvnet.benchmarks.config import EDGE, PAPER, TARGETS
from keras_deconvnet.benchmarks.seeds import format_seeds


def _verdict(name, value, target, higher_is_better, detail, unit="x") -> dict:
    met = None if value is None else (value >= target if higher_is_better else value <= target)
    return {"name": name, "value": value, "target": target,
            "comparison": ">=" if higher_is_better else "<=", "unit": unit,
            "met": met, "detail": detail}


def _forward_verdict(results: dict) -> dict:
    forward = [r for r in results.get("forward", []) if r["dtype"] == "float32"]
    paper_b4 = [r for r in forward if r["preset"] == PAPER and r["batch"] == 4]
    best = min(paper_b4, key=lambda r: r["seconds_per_batch"], default=None)
    return _verdict(
        "paper forward, batch 4, fraction of float32 matmul",
        best and best["fraction_of_matmul"], TARGETS["paper_forward_fraction_of_matmul"], True,
        best and f"{best['mode']}: {best['gflops_per_second']:.1f} GFLOP/s vs matmul "
                 f"{results.get('matmul', {}).get('peak_gflops') or 0:.1f}", unit="",
    )


def _layers_verdict(results: dict) -> dict:
    layers = results.get("layers", [])
    value = detail = None
    if layers:
        ours = sum(r["ours_forward_backward_s"] for r in layers)
        ref = sum(r["reference_forward_backward_s"] for r in layers)
        value = ours / ref
        detail = f"sum over {len(layers)} settings: {ours * 1e3:.1f} ms vs {ref * 1e3:.1f} ms"
    return _verdict("pool+unpool cost vs argmax+scatter (fwd+bwd)", value,
                    TARGETS["layers_vs_reference"], False, detail)


def _torch_verdict(results: dict) -> dict:
    forward = [r for r in results.get("forward", []) if r["dtype"] == "float32"]
    torch_rows = results.get("torch", {}).get("rows", [])
    value = detail = None
    for preset in (PAPER, EDGE):
        t = [r for r in torch_rows if r["preset"] == preset and r["batch"] == 1]
        k = [r for r in forward if r["preset"] == preset and r["batch"] == 1]
        if t and k:
            kbest = min(k, key=lambda r: r["seconds_per_image"])
            value = t[0]["seconds_per_image"] / kbest["seconds_per_image"]
            detail = (f"{preset}: Keras {kbest['mode']} {kbest['seconds_per_image'] * 1e3:.1f} "
                      f"ms vs torch {t[0]['seconds_per_image'] * 1e3:.1f} ms per image")
            break
    if not torch_rows:
        detail = results.get("torch", {}).get("skipped", "not measured")
    return _verdict("speed vs PyTorch at batch 1", value, TARGETS["speedup_vs_torch"], True,
                    detail)


def _int8_verdict(results: dict) -> dict:
    exported = results.get("exported", {}).get("rows", [])
    int8 = [r for r in exported if r["runtime"] == "litert" and r["variant"] == "int8"]
    keras_rows = [r for r in exported if r["runtime"] == "keras"]
    value = detail = None
    if int8 and keras_rows:
        kbest = min(keras_rows, key=lambda r: r["seconds_per_image"])
        value = kbest["seconds_per_image"] / int8[0]["seconds_per_image"]
        cpu = results["exported"].get("cpu") or results.get("machine", {}).get("cpu")
        detail = (f"{results['exported']['preset']}: Keras {kbest['variant']} "
                  f"{kbest['seconds_per_image'] * 1e3:.1f} ms vs TFLite int8 "
                  f"{int8[0]['seconds_per_image'] * 1e3:.1f} ms on {cpu}")
    return _verdict("edge TFLite int8 vs Keras float32 at batch 1", value,
                    TARGETS["tflite_int8_speedup"], True, detail)


def _soak_verdict(soak: dict) -> dict:
    wrong = sum(soak["outcomes"].get(k, 0)
                for k in ("wrong_answer", "failed", "unexpected_answer"))
    verdict = _verdict(
        "soak: wrong, failed or unexpected answers", wrong, 0, False,
        f"{soak['requests']} requests; server {'alive' if soak['server_alive'] else 'DIED'}"
        + ("; its log has a traceback" if soak["server_traceback"] else ""), unit="")
    verdict["met"] = soak["passed"]
    return verdict


def compute_verdicts(results: dict) -> list:
    """The four tracked targets from one run's results (`None` where not measured), and
    the soak's outcome when it ran."""
    verdicts = [_forward_verdict(results), _layers_verdict(results),
                _torch_verdict(results), _int8_verdict(results)]
    if "soak" in results:
        verdicts.append(_soak_verdict(results["soak"]))
    return verdicts


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def fmt(value, spec=".1f") -> str:
    return "-" if value is None else format(value, spec)


def _header(results: dict) -> list:
    m, cfg = results["machine"], results["config"]
    return [f"# {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
            f"SIMD {','.join(m['simd']) or '-'}; TF {m['tensorflow']}, "
            f"Keras {m['keras']}, torch {m['torch'] or '-'}; load {m['load_average']}",
            f"# each figure: median of {cfg['repeats']}-{cfg['max_repeats']} timed runs "
            f"(~{cfg['seconds_per_figure']} s) after {cfg['warmup']} warm-up"
            f"{' (QUICK: CI-sized settings, not for speed claims)' if cfg['quick'] else ''}"]


def _matmul(results: dict) -> list:
    mm = results["matmul"]
    again = mm.get("repeated_after_forward")
    return [f"\n## float32 matmul {mm['size']}^3: TF {mm['tensorflow_gflops']:.1f}, "
            f"numpy {mm['numpy_gflops']:.1f} GFLOP/s"
            + (f"; after the forward pass TF {again['tensorflow_gflops']:.1f}, numpy "
               f"{again['numpy_gflops']:.1f}" if again else "")
            + f" (reference: the highest, {mm['peak_gflops']:.1f})"]


def _forward(results: dict) -> list:
    return ["\n## Forward pass (224x224 unless configured)", table(
        ["preset", "dtype", "mode", "batch", "ms/image", "img/s", "GFLOP/s", "of matmul"],
        [[r["preset"], r["dtype"], r["mode"], r["batch"],
          fmt(r["seconds_per_image"] * 1e3), fmt(r["images_per_second"], ".2f"),
          fmt(r["gflops_per_second"]), fmt(r["fraction_of_matmul"], ".0%")]
         for r in results["forward"]])]


def _layers(results: dict) -> list:
    return ["\n## MaxPoolWithArgmax+Unpool (ours) vs max_pool_with_argmax+scatter_nd (ref), ms",
            table(["batch", "input", "ours fwd", "ref fwd", "ours f+b", "ref f+b",
                   "ours f+b xla", "f+b ratio"],
                  [[r["batch"], "x".join(map(str, r["shape"])),
                    fmt(r["ours_forward_s"] * 1e3, ".2f"),
                    fmt(r["reference_forward_s"] * 1e3, ".2f"),
                    fmt(r["ours_forward_backward_s"] * 1e3, ".2f"),
                    fmt(r["reference_forward_backward_s"] * 1e3, ".2f"),
                    fmt(r["ours_xla_forward_backward_s"] * 1e3, ".2f"),
                    fmt(r["forward_backward_ratio"], ".2f")] for r in results["layers"]])]


def _training(results: dict) -> list:
    return ["\n## Training step (SGD, cross-entropy, MeanIoU)",
            table(["preset", "batch", "jit", "s/step", "examples/s"],
                  [[r["preset"], r["batch"], r["jit_compile"], fmt(r["seconds_per_step"], ".3f"),
                    fmt(r["examples_per_second"], ".2f")] for r in results["training"]])]


def _pipeline(results: dict) -> list:
    return ["\n## tf.data crop pipelines (synthetic 128x128 sources)",
            table(["stage", "crop", "crops/pass", "crops/s"],
                  [[r["stage"], r["crop_size"], r["crops_per_pass"], fmt(r["crops_per_second"])]
                   for r in results["pipeline"]])]


def _torch(results: dict) -> list:
    t = results["torch"]
    out = [f"\n## PyTorch {t.get('torch') or ''} eager reference ({t.get('threads', '-')} threads)"]
    if t.get("skipped"):
        return out + [f"skipped: {t['skipped']}"]
    best: dict = {}  # the fastest float32 Keras mode per (preset, batch)
    for r in results.get("forward", []):
        key = (r["preset"], r["batch"])
        if r["dtype"] == "float32" and (
            key not in best or r["seconds_per_image"] < best[key]["seconds_per_image"]
        ):
            best[key] = r
    rows = []
    for r in t["rows"]:
        k = best.get((r["preset"], r["batch"]))
        rows.append([r["preset"], r["batch"], fmt(r["seconds_per_image"] * 1e3),
                     k["mode"] if k else "-", fmt(k and k["seconds_per_image"] * 1e3),
                     fmt(k and r["seconds_per_image"] / k["seconds_per_image"], ".2f")])
    return out + [table(["preset", "batch", "torch ms/img", "keras mode", "keras ms/img",
                         "keras speed-up"], rows)]


def _exported(results: dict) -> list:
    e = results["exported"]
    cpu = e.get("cpu") or results["machine"]["cpu"]
    return [f"\n## Exported runtimes, {e['preset']}, batch 1, {e['threads']} threads "
            f"on {cpu} (RGB -> probabilities)", table(
                ["runtime", "variant", "ms/image", "vs keras", "MB", "int ops", "convert s"],
                [[r["runtime"], r["variant"], fmt(r["seconds_per_image"] * 1e3),
                  fmt(r["speedup_vs_keras_float32"], ".2f"), fmt(r.get("size_mb")),
                  fmt(r.get("integer_ops") and 100 * r["integer_ops"], ".0f")
                  + ("%" if r.get("integer_ops") is not None else ""),
                  fmt(r.get("convert_s"))] for r in e["rows"]])]


def _memory(results: dict) -> list:
    return ["\n## Peak resident memory, float32 inference (fresh process each)",
            table(["preset", "batch", "after build MB", "peak MB"],
                  [[r["preset"], r["batch"], fmt(r["after_build_mb"], ".0f"),
                    fmt(r["peak_mb"], ".0f")] for r in results["memory"]])]


def _share_table(title: str, rows: Sequence[dict]) -> str:
    return table([title, "ms", "share"],
                 [[r["name"], fmt(r["seconds"] * 1e3), fmt(r["share"], ".1%")] for r in rows])


def _profile(results: dict) -> list:
    p = results["profile"]
    return [f"\n## Profile: {p['preset']} forward, batch {p['batch']} "
            f"({p['wall_seconds_per_batch'] * 1e3:.0f} ms wall, "
            f"{p['op_seconds_per_batch'] * 1e3:.0f} ms op time)",
            _share_table("layer kind", p["by_kind"]), "",
            _share_table("top layers", p["by_layer"][:8]), "",
            _share_table("op type", p["by_op_type"]),
            "\nSame network, other pooling/unpooling (ablation, one inter-op thread):",
            table(["variant", "ms/batch", "vs ours"],
                  [[r["variant"], fmt(r["seconds_per_batch"] * 1e3), fmt(r["vs_ours"], ".2f")]
                   for r in p["ablation"]])]


def _proposals(results: dict) -> list:
    p = results["proposals"]
    return [f"\n## Instance-wise inference, {p['preset']} at {p['image_size']}, one 500x375 "
            "image (proposal generation timed apart)",
            table(["proposals", "batch", "s/image", "ms/proposal", "proposals ms"],
                  [[r["proposals"], r["batch_size"], fmt(r["seconds_per_image"], ".3f"),
                    fmt(r["ms_per_proposal"]), fmt(r["proposal_generation_ms"])]
                   for r in p["rows"]])]


def _serving(results: dict) -> list:
    s = results["serving"]
    return [f"\n## Local server, {s['preset']} {s['image_size']}x{s['image_size']}, "
            f"{s['signature']}, batching {'on' if s['batching'] else 'off'} (client and "
            "server on this machine)",
            table(["api", "concurrency", "requests", "req/s", "p50 ms", "p95 ms", "errors"],
                  [[r["api"], r["concurrency"], r["requests"], fmt(r["requests_per_s"], ".2f"),
                    fmt(r["p50_ms"]), fmt(r["p95_ms"]), r["errors"]] for r in s["rows"]])]


def _soak(results: dict) -> list:
    r = results["soak"]
    out = [f"\n## Soak: {r['requests']} requests from {r['concurrency']} threads "
           f"({'REST + gRPC' if r['grpc'] else 'REST'}), {r['image_size']}x{r['image_size']} "
           "model",
           f"{r['seconds']} s, {r['requests_per_s']} requests/s; outcomes: "
           + ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))]
    rows = []
    for kind, counts in r["by_kind"].items():
        expected = counts.get("ok", 0) + counts.get("refused_as_expected", 0)
        sent = sum(v for k, v in counts.items() if k != "p50_ms")
        rows.append([kind, sent, expected, sent - expected, fmt(counts["p50_ms"])])
    out.append(table(["kind", "sent", "as expected", "other", "p50 ms"], rows))
    out.append(f"wrong answers: {r['outcomes'].get('wrong_answer', 0)} (near-tie label "
               f"flips allowed: {r['near_tie_label_flips']} pixels)")
    out.append("server RSS MB: " + ", ".join(f"{k} {v}" for k, v in r["rss_mb"].items()))
    if "slot_pinning" in r:
        out.append("slot pinning: " + "; ".join(r["slot_pinning"]["runs"]))
    out += [f"  {key}: {detail}" for key, detail in r["examples"].items()]
    if r["server_traceback"]:
        out.append("server log has a traceback:\n" + r["server_traceback"])
    return out


def _seeds(results: dict) -> list:
    return ["\n## Synthetic shapes, mean IoU (%) per seed"] + format_seeds(results["seeds"])


def _verdicts(results: dict) -> list:
    quick = results["config"]["quick"]
    out = ["\n## Verdicts" + (" (quick settings: indicative only)" if quick else "")]
    for v in results["verdicts"]:
        state = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[v["met"]]
        out.append(f"- {v['name']}: {fmt(v['value'], '.2f')}{v['unit']} "
                   f"(target {v['comparison']} {v['target']}{v['unit']}): {state}"
                   + (f"  [{v['detail']}]" if v["detail"] else ""))
    return out


# Result key -> formatter, in report order.
SECTION_FORMATTERS = {
    "matmul": _matmul, "forward": _forward, "layers": _layers, "training": _training,
    "pipeline": _pipeline, "torch": _torch, "exported": _exported, "memory": _memory,
    "profile": _profile, "proposals": _proposals, "serving": _serving, "soak": _soak,
    "seeds": _seeds, "backends": format_backends, "verdicts": _verdicts,
}


def format_report(results: dict) -> str:
    """Text tables of every measured section, then the verdicts."""
    out = _header(results)
    for key, formatter in SECTION_FORMATTERS.items():
        if results.get(key):
            out += formatter(results)
    out.append(f"\n# total {results['total_seconds']:.0f} s; sections: " + ", ".join(
        f"{k} {v:.0f} s" for k, v in results["section_seconds"].items()))
    return "\n".join(out)
