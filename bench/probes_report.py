"""Train the probe models (miniclip.probes.RECIPES) at full size and print every probe number.

    python bench/probes_report.py                       # the RECIPES runs (a base, a fine-tune, two from scratch) + every probe
    python bench/probes_report.py --data-efficiency     # + DATA_EFFICIENCY's small runs on fewer images
    python bench/probes_report.py --smoke               # seconds: tiny runs (SMOKE_RECIPE) and sets (SMOKE_SIZES)

Runs are kept in --runs (default /tmp/probe_runs/report) and reused when their recipe has not changed
(probes.train_probe_model: a fine-tune is retrained when its base is newer); each run's probe results are
written next to it as probes.json. Training times are wall-clock seconds, 0 when a run was reused.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from miniclip import probes


def flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def show(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="/tmp/probe_runs/report")
    parser.add_argument("--recipes", default=",".join(probes.RECIPES))
    parser.add_argument("--data-efficiency", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs) / ("smoke" if args.smoke else "full")
    sizes = probes.SMOKE_SIZES if args.smoke else probes.FULL_SIZES

    results = {}
    for name in [n for n in args.recipes.split(",") if n]:
        cfg = probes.probe_config(name, smoke=args.smoke, runs=runs)
        t = time.perf_counter()
        run = probes.train_probe_model(name, runs, smoke=args.smoke, progress=False)
        trained = time.perf_counter() - t
        t = time.perf_counter()
        results[name] = probes.run_probes(run.model, run.tokenizer, sizes=sizes)
        probed = time.perf_counter() - t
        (runs / name / "probes.json").write_text(json.dumps(results[name], indent=1))
        zs = [r["val_zeroshot_top1"] for r in run.history if "val_zeroshot_top1" in r]
        start = f"fine-tuned from {Path(cfg.init_from).name}, " if cfg.init_from else ""
        print(f"== {name}: {start}{cfg.steps} steps x {cfg.batch_size} pairs, train {trained:.0f} s (0 if reused), "
              f"probes {probed:.0f} s, final val zero-shot top-1 {zs[-1] if zs else float('nan'):.3f}")
        if name == "base":
            curve = probes.history_curve(run.history, cfg.batch_size)
            print("   learning curve (pairs seen -> zero-shot top-1):",
                  ", ".join(f"{p}: {a:.3f}" for p, a in zip(curve["pairs_seen"], curve["accuracy"])))

    # every number, one row per key, one column per model
    names = list(results)
    rows = {n: flat(results[n]) for n in names}
    keys = [k for k in rows[names[0]] if not k.endswith("note")] if names else []
    print("\n" + "probe".ljust(52) + "".join(n[:14].rjust(15) for n in names))
    for k in keys:
        print(k.ljust(52) + "".join(show(rows[n].get(k, "")).rjust(15) for n in names))

    print("\nheadlines")
    if "base" in results and "hard_negatives" in results:
        for key in ("accuracy", "accuracy_left_right", "accuracy_above_below", "mirror_accuracy"):
            print(f"  spatial {key}: without hard negatives {results['base']['2_spatial'][key]:.3f}, "
                  f"with {results['hard_negatives']['2_spatial'][key]:.3f} (chance 0.5)")
    for n in names:
        r = results[n]
        print(f"  {n}: counting {r['2_counting']['accuracy']:.3f} (chance 1/3), "
              f"binding {r['2_binding']['accuracy']:.3f} (0.5), spatial {r['2_spatial']['accuracy']:.3f} (0.5), "
              f"typographic flip rate {r['typographic']['flip_rate']:.3f}, "
              f"follows word {r['typographic']['follows_word_rate']:.3f}, "
              f"bias gap (added class) {r['8_bias']['gap_added_class']:+.3f}")
    if len(names) > 1:
        ranked = probes.rank_models(results)
        print("  ranking by evaluation set:", json.dumps(ranked["winner"]))
        print(f"  mean rank {json.dumps(ranked['mean_rank'])}; {ranked['n_winners']} different winners; "
              f"agreement between sets {ranked['agreement']:.2f}")

    if args.data_efficiency:
        spec = probes.DATA_EFFICIENCY
        histories = {}
        for n_images in spec["num_images"]:
            run = probes.train_probe_model(spec["recipe"], runs, smoke=args.smoke, folder=f"data_{n_images}",
                                           progress=False, num_images=n_images, **spec["train"])
            histories[n_images] = run.history
        cfg = probes.probe_config(spec["recipe"], smoke=args.smoke, **spec["train"])
        curve = probes.data_efficiency(histories)
        print(f"\ndata efficiency (distinct training images -> zero-shot top-1 after {cfg.steps} steps of "
              f"{cfg.batch_size} pairs):", json.dumps(curve))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
