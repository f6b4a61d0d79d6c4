"""`berth train`, `berth evaluate` and `berth serve-recommender`: the shells around the
recommender. Training and evaluation need torch (`pip install 'berth[train]'`); serving does
not."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from berth.core import tables
from berth.progress_bar import bar
from berth.recommender import dataset
from berth.recommender.model import SHIPPED


def add_parsers(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train the recommender on the measured tables and export it to ONNX"
    )
    train.add_argument("--out", type=Path, default=Path("recommender.onnx"),
                       help="model path; <out>.sha256 is written beside it "
                       "(the shipped model: src/berth/data/recommender.onnx)")  # fmt: skip
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--members", type=int, default=5, help="ensemble size")
    train.add_argument("--epochs", type=int, default=1000, help="most epochs per member")
    train.add_argument("--quiet", action="store_true")
    train.add_argument("--leave-out", default="", metavar="FAMILY,...",
                       help="train without these families' rows (berth-cold's model: "
                       "recommender-cold.onnx leaves out the ITP trace's)")  # fmt: skip
    retrain = train.add_argument_group(
        "retraining on measured jobs",
        "with either option the measured records join the shipped tables, and the new model "
        "replaces --current only if it is not worse on held-out rows; the comparison is "
        "written to <out>.comparison.json either way",
    )
    retrain.add_argument("--from-prometheus", metavar="URL",
                         help="collect the jobs berth's workers reported here")  # fmt: skip
    retrain.add_argument("--since", default="7d",
                         help="how far back (default 7d; 90s, 30m, 12h, 2w)")  # fmt: skip
    retrain.add_argument("--records", type=Path, action="append", default=[], metavar="CSV",
                         help="profile records from `berth profile` (repeatable)")  # fmt: skip
    retrain.add_argument("--current", type=Path, default=None,
                         help="model to beat (default: --out if present, or shipped)")  # fmt: skip
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="grouped folds (leave one type, family, source out): error, intervals, "
        "top-1; the spec-ratio baseline beside",
    )
    evaluate.add_argument("--model", type=Path, default=SHIPPED)
    evaluate.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    evaluate.add_argument("--plot", type=Path, default=None,
                          help="predicted vs measured on the held-out rows (PNG)")  # fmt: skip
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.add_argument("--mlp", action="store_true",
                          help="also the MLP, retrained in each fold (torch; slow)")  # fmt: skip
    evaluate.set_defaults(func=cmd_evaluate)

    serve = commands.add_parser(
        "serve-recommender", help="serve the recommender over HTTP (onnxruntime; no torch)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; 0.0.0.0 in pods")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--model", type=Path, default=SHIPPED,
                       help="ONNX model, <model>.sha256 beside it (default: shipped)")  # fmt: skip
    serve.add_argument("--drift-prometheus", metavar="URL",
                       help="serve berth_recommender_drift_* from jobs measured here")  # fmt: skip
    serve.add_argument("--drift-every", type=float, default=3600.0, metavar="SECONDS")
    serve.add_argument("--drift-window", default="7d", help="jobs measured over (default 7d)")
    serve.set_defaults(func=cmd_serve)


def _torch_or_exit() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs torch: pip install 'berth[train]'", file=sys.stderr)
        raise SystemExit(2) from None


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.1%}"  # None, NaN: nothing to measure


def _print_metrics(h: dict[str, Any], t: dict[str, Any]) -> None:
    print(f"the MLP on a random split of its own rows ({h['rows']}, {h['power_rows']} with power;"
          " a (family, type) seen in training: optimistic):")  # fmt: skip
    print(f"  throughput MAPE {_pct(h['throughput_mape'])}  (target <= 10%)")
    for kind in ("source", "type"):
        parts = ", ".join(f"{k} {_pct(v)}" for k, v in h[f"throughput_mape_by_{kind}"].items())
        print(f"    by {kind}: {parts}")
    print(f"  power MAPE {_pct(h['power_mape'])}")
    print(f"  90% interval coverage {_pct(h['coverage_90'])}  (target >= 85%)")
    print(
        f"top-1 over {t['groups']} (family, batch) groups: time {_pct(t['top1_time'])} "
        f"(regret {_pct(t['mean_regret_time'])}), energy {_pct(t['top1_energy'])} "
        f"(regret {_pct(t['mean_regret_energy'])})  (target >= 95%)"
    )


def cmd_train(args: argparse.Namespace) -> int:
    _torch_or_exit()
    if args.from_prometheus or args.records:
        return _retrain(args)
    from berth.recommender import evaluation, train
    from berth.simulator.truth import GroundTruth

    s = train.Hyperparameters(members=args.members, epochs=args.epochs, seed=args.seed)
    records, power = tables.read()
    left_out = sorted({f.strip() for f in args.leave_out.split(",") if f.strip()})
    records = [r for r in records if r.family not in left_out]
    power = [p for p in power if p.family not in left_out]
    rows = dataset.build(records, power)
    rest, test = dataset.split(len(rows), s.test_fraction, s.seed)
    print(f"training on {len(rest)} rows ({len(test)} held out) ...", file=sys.stderr)
    trained = train.fit(rows.subset(rest), s, bar("ensemble", s.members, "members", args.quiet))

    truth = GroundTruth(records, power)
    metrics = {
        "held_out": evaluation.held_out(trained.calibrated, rows.subset(test)),
        "top1": evaluation.top1(trained.calibrated, rows, _true_watts(truth), _tdp),
    }
    meta = {
        "data_sha256": dataset.digest(records, power),
        "settings": train.settings_dict(s),
        "rows": {"train": len(rest), "test": len(test)},
        "metrics": metrics,
        "left_out": left_out,
    }
    digest = train.export(trained, args.out, meta, rows.x)
    _print_metrics(metrics["held_out"], metrics["top1"])
    print(f"model: {args.out} (sha256 {digest})")
    return 0


def _measured(args: argparse.Namespace) -> list[Any]:
    import time

    from berth.profiler import collector

    records = [r for path in args.records for r in tables.read_records(path)]
    if args.from_prometheus:
        since = collector.parse_since(args.since)
        source = collector.connect(args.from_prometheus)
        end = time.time()
        runs = source.runs(end - since, end)
        print(f"{len(runs)} measured job run(s) in {args.from_prometheus} over {args.since}",
              file=sys.stderr)  # fmt: skip
        records += [run.record(args.from_prometheus) for run in runs]
    return records


def _retrain(args: argparse.Namespace) -> int:
    from berth.recommender import retrain, train
    from berth.recommender.model import ModelError, load

    try:
        new = _measured(args)
    except (ValueError, OSError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    current_path = args.current or (args.out if args.out.exists() else SHIPPED)
    try:
        current = load(current_path)
    except ModelError as exc:
        print(f"error: the model to beat: {exc}", file=sys.stderr)
        return 2
    s = train.Hyperparameters(members=args.members, epochs=args.epochs, seed=args.seed)
    d = retrain.data(new, s.test_fraction, s.seed)
    print(f"training on {len(d.train)} rows ({len(new)} measured record(s) added; "
          f"{len(d.held_out)} held out) ...", file=sys.stderr)  # fmt: skip
    trained = train.fit(d.train, s, bar("ensemble", s.members, "members", args.quiet))

    report = retrain.compare(current.infer, trained.calibrated, d)
    report |= {"current_model": str(current_path), "current_sha256": current.sha256}
    comparison = args.out.with_name(args.out.name + ".comparison.json")
    drift = report["drift_throughput_mape"]
    print(f"drift: current model's throughput MAPE on the measured records: "
          f"{'-' if drift is None else _pct(drift)}")  # fmt: skip
    print(f"held-out throughput MAPE: current {_pct(report['current']['throughput_mape'])}, "
          f"candidate {_pct(report['candidate']['throughput_mape'])}")  # fmt: skip
    if report["promote"]:
        meta = {
            "data_sha256": d.digest,
            "settings": train.settings_dict(s),
            "rows": {"train": len(d.train), "test": len(d.held_out)},
            "metrics": {"held_out": report["candidate"]},
            "retrained_from": current.sha256,
        }
        report["sha256"] = train.export(trained, args.out, meta, d.train.x)
        print(f"promoted: {report['why']}\nmodel: {args.out} (sha256 {report['sha256']})")
    else:
        print(f"not promoted: {report['why']}; {current_path} stays")
    retrain.write_report(comparison, report)
    print(f"comparison: {comparison}")
    return 0  # not promoting is the loop working, not a failure (a CronJob would retry)


def _tdp(type_id: str) -> float:
    return dataset.variant_of(type_id).tdp_w


def _true_watts(truth: Any) -> Any:
    def watts(family: str, type_id: str) -> float:
        return float(truth.device_watts(family, dataset.variant_of(type_id)).value)

    return watts


SERVED = "served: transfer, else mlp"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from berth.recommender import evaluation
    from berth.recommender.model import ModelError, load
    from berth.simulator.truth import GroundTruth

    try:
        model = load(args.model)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.mlp:
        _torch_or_exit()
    records, power = tables.read()
    everything = records + tables.read_transfer()
    predictors: dict[str, evaluation.Fit] = {
        "spec-ratio": evaluation.spec_ratio,
        "transfer": evaluation.transferred,
    }
    if args.mlp:
        predictors["mlp (previous)"] = evaluation.mlp_in_folds(power, model.metadata["settings"])
    grouped: dict[str, dict[str, Any]] = {}
    for grouping, key in evaluation.GROUPINGS.items():
        answers: dict[str, list[evaluation.Answer]] = {}
        for name, fit in predictors.items():
            if not args.quiet:
                print(f"leave one {grouping} out: {name}", file=sys.stderr)
            answers[name] = evaluation.out_of_fold(everything, key, fit)
            grouped.setdefault(grouping, {})[name] = evaluation.summarise(
                everything, key, answers[name]
            )
        if args.mlp:  # what the server answers: the transfer's, else the MLP's
            answers[SERVED] = [
                t if t is not None else m
                for t, m in zip(answers["transfer"], answers["mlp (previous)"], strict=True)
            ]
            grouped[grouping][SERVED] = evaluation.summarise(everything, key, answers[SERVED])
        # The baseline answers fewer rows (no roofline): the two again on the rows both answer.
        pairs = zip(answers["spec-ratio"], answers["transfer"], strict=True)
        both = [i for i, (a, b) in enumerate(pairs) if a is not None and b is not None]
        for name in ("spec-ratio", "transfer"):
            if both:
                grouped[grouping][f"{name}, rows both answer"] = evaluation.summarise(
                    [everything[i] for i in both], key, [answers[name][i] for i in both]
                )
    metrics: dict[str, Any] = {
        "model": str(args.model),
        "sha256": model.sha256,
        "rows": len(everything),
        "grouped": grouped,
    }
    if model.metadata.get("data_sha256") != dataset.digest(records, power):
        print("warning: the model was trained on other data than the shipped tables")
    rows = dataset.build(records, power)
    settings = model.metadata["settings"]
    _, test = dataset.split(len(rows), settings["test_fraction"], settings["seed"])
    metrics["mlp_random_split"] = evaluation.held_out(model.infer, rows.subset(test))
    metrics["mlp_top1_seen"] = evaluation.top1(
        model.infer, rows, _true_watts(GroundTruth(records, power)), _tdp
    )
    _print_grouped(grouped, len(everything))
    _print_metrics(metrics["mlp_random_split"], metrics["mlp_top1_seen"])
    if args.plot:
        held = rows.subset(test)
        _plot(args.plot, held.y[:, 0], model.infer(held.x)[0][:, 0], held.source)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"metrics: {args.json}")
    return 0


def _print_grouped(grouped: dict[str, dict[str, Any]], rows: int) -> None:
    print(f"grouped folds over {rows} measured rows (each predicted by a fit without its group):")
    print(f"  {'left out':<8} {'predictor':<28} {'MAPE*':>7} {'median':>7} {'answered':>8}"
          f" {'cover90':>7} {'top-1 time (regret)':>20} {'top-1 energy (regret)':>22}")  # fmt: skip
    for grouping, by_predictor in grouped.items():
        for name, m in by_predictor.items():
            print(
                f"  {grouping:<8} {name:<28} {_pct(m['median_mape_over_groups']):>7}"
                f" {_pct(m['median_error']):>7} {_pct(m['answered']):>8}"
                f" {_pct(m['coverage_90']):>7}"
                f" {_pct(m['top1_time']) + ' (' + _pct(m['regret_time']) + ')':>20}"
                f" {_pct(m['top1_energy']) + ' (' + _pct(m['regret_energy']) + ')':>22}"
            )
    print("  * median over the left-out groups of each group's throughput MAPE; median: of every"
          " row's error. Targets: type <= 20%, source <= 30%; cover90 85-95%; top-1 >= 90% with"
          " regret <= 5%. Top-1 energy ranks at TDP x 0.8 per device, measured and predicted"
          " alike (modelled).")  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from berth.recommender.model import ModelError
    from berth.recommender.server import Server, watch, watch_drift

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = Server(args.model, args.host, args.port)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    watch(server.service)
    if args.drift_prometheus:
        from berth.profiler.collector import connect, parse_since

        try:
            window = parse_since(args.drift_window)
            watch_drift(server.service, connect(args.drift_prometheus), args.drift_every, window)
        except (ValueError, ConnectionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    host, port = server.address
    print(f"serving {server.service.model.version} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()  # until SIGTERM or SIGINT: requests in flight are finished
    finally:
        server.close()
    return 0


def _plot(path: Path, measured: Any, predicted: Any, sources: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = ~np.isnan(measured)
    fig, ax = plt.subplots(figsize=(6, 6))
    for source in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == source and ok[i]]
        ax.scatter(np.exp(measured[idx]), np.exp(predicted[idx]), s=12, label=source)
    low, high = float(np.exp(np.nanmin(measured))), float(np.exp(np.nanmax(measured)))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="measured samples/s", ylabel="predicted samples/s",
           title="held-out rows: predicted vs measured")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
