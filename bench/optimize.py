"""Benchmark of the optimization pipeline against the plain converter, measured in the same run.

    .venv/bin/python bench/optimize.py [--workdir DIR] [--skip-mobilenet]

Models: (a) a digits CNN trained here on sklearn's 8x8 digits, (b) a tabular MLP (20 -> 256 -> 128 -> 3) on
generated data, (c) Keras MobileNetV2 alpha 0.35 at 96x96 with weights=None (size and latency only).
The baseline of every ratio is `TFLiteConverter.from_keras_model(model).convert()` with no options, measured
with the same LiteRT code as the variants. Metric drops are in points (accuracy x 100) against that baseline.
Each target from issue 3 is printed next to its measured figure with PASS or MISS.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import coordinator.optimize  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np  # noqa: E402

TARGET_DEFAULT_RECIPE_S = 180.0


def digits_case(root: Path):
    import tf_keras
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, va = idx[:1400], idx[1400:]
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
                                 L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x[tr], y[tr], epochs=30, batch_size=32, verbose=0)
    return _save(root, "digits", model, x[tr], y[tr], x[va], y[va])


def tabular_case(root: Path):
    import tf_keras
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=5000, n_features=20, n_informative=6, n_redundant=2, n_classes=3,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((20,)), L.Dense(256, activation="relu"), L.Dropout(0.3),
                                 L.Dense(128, activation="relu"), L.Dropout(0.3), L.Dense(3, activation="softmax")])
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x[:4000], y[:4000], epochs=20, batch_size=64, verbose=0)
    return _save(root, "tabular", model, x[:4000], y[:4000], x[4000:], y[4000:])


def _save(root: Path, name: str, model, x_train, y_train, x_val, y_val):
    model.save(root / f"{name}.keras")
    np.savez(root / f"{name}.npz", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    return model, root / f"{name}.keras", root / f"{name}.npz", x_val, y_val


def plain(model, x_val=None, y_val=None):
    from coordinator.optimize.conversion import plain_convert
    from coordinator.optimize.measure import measure_tflite

    return measure_tflite(plain_convert(model), x_val=x_val, y_val=y_val, task="classification" if y_val is not None else None)


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.targets: list[tuple[str, str, str, bool]] = []

    def row(self, case: str, vid: str, base, v) -> None:
        metric = "-" if v.metric is None else f"{v.metric * 100:6.2f}"
        drop = "-" if v.metric is None or base.metric is None else f"{(base.metric - v.metric) * 100:+5.2f}"
        macs = v.figures.get("macs") if hasattr(v, "figures") else getattr(v, "macs", None)
        self.rows.append((case, vid, v.size_bytes, v.size_bytes / base.size_bytes, v.gzip_bytes, v.gzip_bytes / base.gzip_bytes,
                          metric, drop, v.latency_p50_ms, v.latency_p50_ms / base.latency_p50_ms,
                          (macs or 0) / base.macs if base.macs else 0.0))

    def target(self, name: str, goal: str, measured: str, ok: bool | None) -> None:
        self.targets.append((name, goal, measured, ok))

    def print(self) -> None:
        head = f"{'model':9} {'variant':20} {'bytes':>10} {'x plain':>8} {'gzip':>9} {'x plain':>8} {'acc %':>7} {'drop pt':>8} {'p50 ms':>8} {'x plain':>8} {'MACs x':>7}"
        print(head)
        print("-" * len(head))
        for case, vid, size, rs, gz, rg, metric, drop, p50, rl, rm in self.rows:
            print(f"{case:9} {vid:20} {size:>10,} {rs:>8.3f} {gz:>9,} {rg:>8.3f} {metric:>7} {drop:>8} {p50:>8.4f} {rl:>8.2f} {rm:>7.2f}")
        print()
        print(f"{'target':58} {'goal':26} {'measured':30} result")
        for name, goal, measured, ok in self.targets:
            print(f"{name:58} {goal:26} {measured:30} {'info' if ok is None else 'PASS' if ok else 'MISS'}")


def pipeline_case(report: Report, case: str, model_path: Path, data_path: Path, model, x_val, y_val, workdir: Path) -> None:
    from coordinator.optimize.pipeline import run_pipeline

    base = plain(model, x_val, y_val)
    report.rows.append((case, "plain converter", base.size_bytes, 1.0, base.gzip_bytes, 1.0, f"{base.metric * 100:6.2f}", "+0.00",
                        base.latency_p50_ms, 1.0, 1.0))
    started = time.monotonic()
    result = run_pipeline(model_path, data_path, workdir=workdir / case, recipe="default")
    default_s = time.monotonic() - started
    recipe = workdir / f"{case}-extra.toml"
    recipe.write_text('techniques = ["structured_pruning"]\n')
    extra = run_pipeline(model_path, data_path, workdir=workdir / case, recipe=recipe)
    variants = {v.id: v for v in [*result.variants, *extra.variants[1:]]}
    for vid, v in variants.items():
        if v.ok:
            report.row(case, vid, base, v)
        else:
            print(f"  {case} {vid}: {v.error or v.skipped}", file=sys.stderr)

    def drop(v) -> float:
        return (base.metric - v.metric) * 100

    int8, pruned, qat, structured = (variants.get(k) for k in ("int8", "pruned80_int8", "qat_int8", "structured50_int8"))
    limit = 0.30 if case == "digits" else 0.35
    report.target(f"({case}) full-int8 size vs fp32", f"<= {limit:.2f}x", f"{int8.size_bytes / base.size_bytes:.3f}x",
                  int8.size_bytes / base.size_bytes <= limit)
    report.target(f"({case}) full-int8 metric drop", "<= 1.0 pt", f"{drop(int8):+.2f} pt", drop(int8) <= 1.0)
    ratio = pruned.gzip_bytes / base.gzip_bytes
    report.target(f"({case}) pruned80+int8 gzip vs fp32 gzip, drop", "<= 0.15x, <= 1.5 pt",
                  f"{ratio:.3f}x, {drop(pruned):+.2f} pt", ratio <= 0.15 and drop(pruned) <= 1.5)
    fewer = 1 - structured.figures["macs_after"] / base.macs
    report.target(f"({case}) structured pruning MACs, drop", ">= 40% fewer, <= 1.5 pt",
                  f"{fewer * 100:.1f}% fewer, {drop(structured):+.2f} pt", fewer >= 0.40 and drop(structured) <= 1.5)
    gap = (qat.metric - int8.metric) * 100
    report.target(f"({case}) QAT int8 vs PTQ int8", ">= -0.2 pt", f"{gap:+.2f} pt", gap >= -0.2)
    if case == "tabular":
        # RFE lowers what the device computes and sends; PCA keeps every input (projection inside the model).
        rfe, pca = variants.get("rfe_int8"), variants.get("pca_int8")
        sent = len(rfe.input_features)
        report.target(f"({case}) PCA or RFE: input features needed, drop", "<= 50%, <= 2 pt",
                      f"RFE {sent}/20 = {sent / 20:.0%}, {drop(rfe):+.2f} pt", sent <= 10 and drop(rfe) <= 2.0)
        k = int(pca.figures["n_components"])
        report.target(f"({case}) PCA components (info; device sends all 20)", "-", f"{k} comps, {drop(pca):+.2f} pt", None)
    if case == "digits":
        report.target("(digits) default recipe wall time", f"<= {TARGET_DEFAULT_RECIPE_S:.0f} s", f"{default_s:.1f} s",
                      default_s <= TARGET_DEFAULT_RECIPE_S)


def mobilenet_case(report: Report) -> None:
    import tf_keras

    from coordinator.optimize.conversion import convert
    from coordinator.optimize.measure import measure_tflite

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    base = plain(model)
    report.rows.append(("mobilenet", "plain converter", base.size_bytes, 1.0, base.gzip_bytes, 1.0, "-", "-", base.latency_p50_ms, 1.0, 1.0))
    # No data set here: calibration rows are random images in the [-1, 1] range MobileNetV2 expects.
    rows = np.random.default_rng(0).uniform(-1, 1, size=(100, 96, 96, 3)).astype(np.float32)
    for mode in ("fp32", "float16", "dynamic", "int8"):
        m = measure_tflite(convert(model, mode, representative=rows))
        report.row("mobilenet", mode, base, m)
        if mode == "int8":
            ratio = m.size_bytes / base.size_bytes
            report.target("(mobilenet) full-int8 size vs fp32", "<= 0.30x", f"{ratio:.3f}x", ratio <= 0.30)
            report.target("(mobilenet) full-int8 latency vs fp32 (info)", "measured", f"{m.latency_p50_ms / base.latency_p50_ms:.2f}x", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-mobilenet", action="store_true")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="edgefleet-bench-optimize-"))
    root.mkdir(parents=True, exist_ok=True)
    report = Report()
    started = time.monotonic()
    for factory, case in ((digits_case, "digits"), (tabular_case, "tabular")):
        model, model_path, data_path, x_val, y_val = factory(root)
        pipeline_case(report, case, model_path, data_path, model, x_val, y_val, root)
    if not args.skip_mobilenet:
        mobilenet_case(report)
    print(f"\nedgefleet optimizer benchmark (LiteRT, 1 thread, p50 of >= 50 invokes and >= 0.25 s); workdir {root}")
    report.print()
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0 if all(ok is not False for *_, ok in report.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
