"""The `isojax` command: `isojax check` (every theorem of THEORY.md over random instances), and more."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def _check(args) -> int:
    import jax

    from isojax import theory
    from isojax._validate import float_dtype

    start = time.perf_counter()
    rows = theory.run_checks(jax.random.PRNGKey(args.seed), args.instances, args.only)
    elapsed = time.perf_counter() - start
    failed = [r for r in rows if not r.passed]
    if args.json:
        json.dump({"dtype": str(float_dtype()), "seed": args.seed, "passed": not failed,
                   "seconds": {"total": elapsed, **theory.TIMINGS},
                   "rows": [dataclasses.asdict(r) for r in rows]}, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        width = max(len(r.compares) for r in rows)
        print(f"{'stmt':5} {'compares':{width}} {'max residual':>12} {'tolerance':>10} {'instances':>9}  pass")
        for r in rows:
            print(f"{r.statement:5} {r.compares:{width}} {r.max_residual:12.3g} {r.tolerance:10.3g} "
                  f"{r.instances:9d}  {'yes' if r.passed else 'NO'}")
        notes = [r for r in rows if r.note]
        if notes:
            print("\nnotes:")
            for r in notes:
                print(f"  {r.statement}: {r.note}")
        print(f"\n{len(rows) - len(failed)}/{len(rows)} rows pass in {float_dtype()}; "
              f"{elapsed:.1f} s in all, {theory.TIMINGS['compile']:.1f} s compiling, "
              f"{theory.TIMINGS['run']:.1f} s running the compiled checks")
    return 1 if failed else 0


def _sweep(args) -> int:
    import json as _json

    import jax

    from isojax import distributions, isotropy, sweep

    if args.config:
        spec = _json.loads(open(args.config).read())
    else:
        spec = {"grid": {"family": args.families, "n": [args.n], "d": [args.d], "knob": args.knobs,
                         "replicate": list(range(args.replicates))}, "seed": args.seed, "out": args.out}
    grid = spec["grid"]
    unknown = set(grid.get("family", [])) - set(distributions.FAMILIES)
    if unknown:
        raise ValueError(f"families {sorted(unknown)} unknown; choose from {sorted(distributions.FAMILIES)}")

    def cell(key, family, n, d, knob, replicate=0):
        k1, k2 = jax.random.split(key)
        return isotropy.all_measures(distributions.sample(family, k1, n, d, knob), k2)

    rows = sweep.run_sweep(cell, grid, spec.get("out", args.out), seed=spec.get("seed", 0), name="isotropy_measures")
    print(f"{len(rows)} cells in {spec.get('out', args.out)}")
    return 0


def _train(args) -> int:
    import jax

    from isojax import train
    from isojax import transformer as tf
    from isojax.data import corpus

    data = corpus.build(args.data, args.tokenizer, jax.random.PRNGKey(args.seed), seq_len=args.seq_len)
    config = tf.Config(vocab=data.vocab, d_model=args.d_model, heads=args.heads, layers=args.layers,
                       mlp=4 * args.d_model, max_len=args.seq_len, causal=args.arch == "decoder")
    params, losses, _ = train.train(jax.random.PRNGKey(args.seed + 1), config, data.sequences,
                                    train.TrainConfig(steps=args.steps))
    train.save(args.out, params, config)
    print(f"final loss {losses[-20:].mean():.4f}; checkpoint {args.out}")
    if data.contexts:
        print(f"forecast NMSE (median of 20 samples) {train.evaluate_forecasts(jax.random.PRNGKey(args.seed + 2), params, config, data):.4f}")
    return 0


def _embed(args) -> int:
    from pathlib import Path

    import jax
    import jax.numpy as jnp
    import numpy as np

    from isojax import pretrained, train
    from isojax import transformer as tf
    from isojax.data import corpus, real, tokens

    if args.model == "minilm":
        params, config = pretrained.load_minilm()
        series = real.load(args.data[5:]) if args.data.startswith("real:") else None
        if series is None:
            raise ValueError("--model minilm embeds serialized real series: --data real:<name>")
        digits = tokens.DigitTokenizer(precision=1, digits=3)
        texts = [digits.to_text(s[:40]) for s in series]
        ids, mask = pretrained.encode(texts)
        hidden = jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0])(jnp.asarray(ids), jnp.asarray(mask))
        hidden = np.moveaxis(np.asarray(hidden), 1, 0)[:, mask]  # [L+1, real tokens, d]
    else:
        params, config = train.load(args.model)
        data = corpus.build(args.data, args.tokenizer, jax.random.PRNGKey(args.seed), seq_len=config.max_len)
        seqs = jnp.asarray(data.sequences[: args.max_sequences])
        hidden = np.asarray(jax.vmap(lambda t: tf.forward(params, t, config)[0])(seqs))  # [n, L+1, T, d]
        hidden = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])  # [L+1, n·T, d]
    layers = hidden
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, hidden=layers)
    print(f"hidden states {layers.shape} -> {out}")
    return 0


def _reproduce(args) -> int:
    from pathlib import Path

    from isojax import experiments

    names = args.only or experiments.NAMES
    for name in names:
        experiments.get(name)  # validate all names before running any
    written = []
    mode = "full" if args.full else "quick"
    for name in names:
        start = time.perf_counter()
        paths = experiments.get(name).run(Path(args.out), quick=not args.full, seed=args.seed)
        seconds = time.perf_counter() - start
        written += paths
        _record_timing(Path(args.out) / "results" / "reproduce_timings.json", mode, name, seconds, args.seed)
        print(f"{name}: {seconds:.1f} s -> {', '.join(str(p) for p in paths)}")
    print(f"{len(written)} figure files written under {Path(args.out) / 'figures'}")
    return 0


def _record_timing(path, mode: str, name: str, seconds: float, seed: int) -> None:
    """Merge one experiment's wall time into OUT/results/reproduce_timings.json ({mode: {name: entry}})."""
    from isojax import sweep

    table = json.loads(path.read_text()) if path.exists() else {}
    table.setdefault(mode, {})[name] = {"seconds": round(seconds, 1), "seed": seed,
                                        "date": time.strftime("%Y-%m-%d %H:%M"), **sweep.machine()}
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep.atomic_write(path, json.dumps(table, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isojax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="verify every statement of THEORY.md (T1a-T5a) over random instances")
    check.add_argument("--instances", type=int, default=1000, help="random instances per statement (default 1000)")
    check.add_argument("--seed", type=int, default=0, help="base PRNG seed (default 0)")
    check.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (T1a T1b T1c T2ab T2c T3 T4a T5a)")
    check.add_argument("--json", action="store_true", help="print the table as JSON")
    check.set_defaults(run=_check)

    sw = sub.add_parser("sweep", help="isotropy measures over a grid of synthetic families (resumable CSV)")
    sw.add_argument("--config", help="JSON file with {grid: {...}, seed, out}; overrides the flags")
    sw.add_argument("--families", nargs="+", default=["cone", "spiked", "mixture"])
    sw.add_argument("--knobs", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0])
    sw.add_argument("--n", type=int, default=500)
    sw.add_argument("--d", type=int, default=64)
    sw.add_argument("--replicates", type=int, default=2)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--out", default="results/sweep.csv")
    sw.set_defaults(run=_sweep)

    tr = sub.add_parser("train", help="train a numeric LM and save a safetensors checkpoint")
    tr.add_argument("--data", default="gp:rbf_0.1", help="teacher | gp:<kernel> | real:<name>")
    tr.add_argument("--tokenizer", choices=["bins", "digits"], default="bins")
    tr.add_argument("--arch", choices=["decoder", "encoder"], default="decoder")
    tr.add_argument("--layers", type=int, default=2)
    tr.add_argument("--d-model", type=int, default=64)
    tr.add_argument("--heads", type=int, default=4)
    tr.add_argument("--seq-len", type=int, default=64)
    tr.add_argument("--steps", type=int, default=300)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default="results/model.safetensors")
    tr.set_defaults(run=_train)

    em = sub.add_parser("embed", help="per-layer hidden states of a model on numeric data, saved as .npz")
    em.add_argument("--model", required=True, help="a checkpoint from `isojax train`, or 'minilm'")
    em.add_argument("--data", default="real:sunspots")
    em.add_argument("--tokenizer", choices=["bins", "digits"], default="bins")
    em.add_argument("--max-sequences", type=int, default=64)
    em.add_argument("--seed", type=int, default=0)
    em.add_argument("--out", default="results/hidden.npz")
    em.set_defaults(run=_embed)

    rp = sub.add_parser("reproduce", help="run the experiments and write every figure")
    mode = rp.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, minutes on 2 CPU cores (default)")
    mode.add_argument("--full", action="store_true", help="paper-scale sizes")
    rp.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    rp.add_argument("--out", default=".", help="writes OUT/figures and OUT/results (default: here)")
    rp.add_argument("--seed", type=int, default=0)
    rp.set_defaults(run=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "instances", 1) < 1:
        parser.error("--instances must be at least 1")
    try:
        return args.run(args)
    except ValueError as err:
        parser.error(str(err))
        return 2


if __name__ == "__main__":
    sys.exit(main())
