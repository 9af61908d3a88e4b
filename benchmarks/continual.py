"""Continual-learning quality and cost of `llctl train`'s strategies, through llctl's own ops.

Two scenarios on scikit-learn's bundled ``load_digits`` (1797 8×8 images, no download):

* Split-Digits: 5 tasks of 2 classes each ({0,1}, {2,3}, …), class-incremental (one 10-way head;
  every task's test split is scored with the full 10-way argmax, i.e. over all classes).
* Permuted-Digits: 5 tasks, each all 10 classes under its own fixed random pixel permutation
  (domain-incremental; task 1 is the identity).

For every scenario × strategy × seed a fresh workspace is made (``ops.init.init``) and its
``llctl.yaml`` written for the digits data (``p0..p63`` floats in [0, 16], labels "0".."9",
``data.holdout_fraction: 0``, ``drift.on_ingest: false``); then per task: its training rows go
through ``ops.ingest.ingest`` (a CSV) and ``ops.train.train``. A task whose batch the label audit
holds (a new task's classes look, at ingest, like a class no longer labelled) is released with a
reason — ``llctl data release N`` — as on-call would release a planned launch; the number of such
releases is printed. Then the new version's ONNX artifact
(fetched from the registry, run with onnxruntime) is scored on every task's test split — a
stratified 70/30 split per task (Permuted-Digits: one split of the images, shared by every
permutation), never ingested. Serving therefore sees exactly what training learned. Strategies: naive, ewc, replay, ewc+replay (the workspace's
``training.strategy``), and joint: one workspace that ingests every task's training rows and
trains once with the naive strategy (the upper bound; no BWT/forgetting). The same shared
hyperparameters (``HPARAMS``) are used for every strategy; the seed changes ``training.seed`` and
the splits (and the permutations).

Metrics, mean ± std over seeds, with R[t, i] = accuracy on task i's test split after training task t:
ACC = mean_i R[T, i]; BWT = mean_{i<T} (R[T, i] − R[i, i]); forgetting = mean_{i<T}
(max_{t<T} R[t, i] − R[T, i]); time = the sum of the wall times of the ``train()`` calls (their CPU
time is shown too, as the machine may be shared; strategies run interleaved task by task).

Targets (issue: continual learning):

1. Split-Digits: replay or ewc+replay ACC ≥ 0.93.
2. Permuted-Digits: ewc+replay ACC ≥ 0.88.
3. Per scenario, the forgetting of the best continual strategy (highest ACC) ≤ 0.2 × naive's.
4. ewc+replay total training time ≤ 1.5 × naive's (per scenario).

``--cli`` drives the real binary instead of the ops: ``llctl ingest --json`` and ``llctl train
--json`` in subprocesses (train time = the wall time of the ``llctl train`` processes, start-up
included; CPU time = theirs). ``--defaults`` trains with the shipped defaults — the workspace's
``llctl.yaml`` sets only the digits schema and ``training.strategy``/``seed`` — and runs three
arms: ``naive`` and ``default`` (``training.strategy``'s default, ewc+replay) on the defaults,
and ``tuned`` (ewc+replay on ``HPARAMS``, the tuned settings above). Targets (issue 11, item 4):

1. Split-Digits: default ACC ≥ 0.93.  2. Permuted-Digits: default ACC ≥ 0.88.
3. Per scenario, default ACC within 3 points of tuned (≥ tuned − 0.03).
4. Per scenario, default total training time ≤ 1.5 × naive's (both on the defaults).

    .venv/bin/python benchmarks/continual.py [--seeds 3] [--quick] [--set training.epochs=30 ...]
    .venv/bin/python benchmarks/continual.py --cli --defaults [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import yaml

N_TASKS = 5
FEATURES = [f"p{i}" for i in range(64)]
CLASSES = [str(i) for i in range(10)]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STRATEGIES = ("naive", "ewc", "replay", "ewc+replay", "joint")
CONTINUAL = ("naive", "ewc", "replay", "ewc+replay")
SCENARIOS = ("Split-Digits", "Permuted-Digits")
TEST_FRACTION = 0.3

# The shared hyperparameters: identical for every strategy (only training.strategy differs; joint
# trains once, naive, with the same epochs over all the data). Why: 256×256 because the five
# permutations share one network (128×128 scored Permuted-Digits 0.01–0.02 lower); no dropout (small,
# clean data, short runs; 0.1 made no difference beyond noise); 30 epochs of batch 32 at Adam's usual
# 1e-3 fit a 250- or 1257-row task (50 epochs did not help); a reservoir of 300 rows is a fixed memory
# of 24% of the Split stream but under 5% of the Permuted one, half of each batch replayed (the usual
# 1:1); EWC λ = 100 (llctl's default): 30 and 100 tied within noise on Permuted-Digits with replay,
# 300 and 1000 scored lower (later tasks were learned less well); 500 rows suffice for a diagonal Fisher.
# The learning rate stays 1e-3 for continued training and preprocessing is the plain standardisation,
# as when these settings were tuned (the shipped defaults lower the one and floor and clip the other).
HPARAMS: dict = {
    "model": {"hidden": [256, 256], "dropout": 0.0},
    "training": {
        "epochs": 30,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "continued_lr_factor": 1.0,
        "preprocess": {"scale_floor": 0.0, "clip": None},
        "grad_clip": 1.0,
        "replay": {"buffer_size": 300, "new_ratio": 0.5},
        "ewc": {"ewc_lambda": 100.0, "fisher_samples": 500},
    },
}
QUICK_EPOCHS = 10
DEFAULT_ARMS = ("naive", "default", "tuned")  # --defaults: naive and the default strategy on the defaults; tuned
LLCTL = str(Path(sys.executable).parent / "llctl")

TARGET_SPLIT_ACC = 0.93
TARGET_PERM_ACC = 0.88
TARGET_FORGET_RATIO = 0.2
TARGET_TIME_RATIO = 1.5
TARGET_TUNED_GAP = 0.03


# ---------------------------------------------------------------------------------------------
# data


def stratified_split(y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): TEST_FRACTION of every class goes to test."""
    tr, te = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * TEST_FRACTION))
        te.append(idx[:k])
        tr.append(idx[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def make_tasks(scenario: str, seed: int) -> list[dict]:
    """Each task: x_train, y_train, x_test, y_test (raw pixels 0..16 as float, int labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    rng = np.random.default_rng(1000 + seed)
    tasks = []
    if scenario == "Split-Digits":
        for t in range(N_TASKS):
            sel = np.flatnonzero(np.isin(y, [2 * t, 2 * t + 1]))
            tr, te = stratified_split(y[sel], rng)
            tasks.append({"x_train": x[sel[tr]], "y_train": y[sel[tr]], "x_test": x[sel[te]], "y_test": y[sel[te]]})
    else:
        tr, te = stratified_split(y, rng)  # the same images are test images in every permuted task
        for t in range(N_TASKS):
            perm = np.arange(64) if t == 0 else rng.permutation(64)
            xp = x[:, perm]
            tasks.append({"x_train": xp[tr], "y_train": y[tr], "x_test": xp[te], "y_test": y[te]})
    return tasks


def table_of(x: np.ndarray, y: np.ndarray | None = None, *, task: int = 0, start: int = 0) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    if y is not None:
        n = len(x)
        cols["example_id"] = pa.array([f"t{task}-{start + i}" for i in range(n)])
        base = T0 + timedelta(days=task)
        cols["event_time"] = pa.array([(base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(n)])
        cols["label"] = pa.array([str(v) for v in y])
    for j, name in enumerate(FEATURES):
        cols[name] = pa.array(x[:, j].astype(np.float64))
    return pa.table(cols)


# ---------------------------------------------------------------------------------------------
# workspace


def config_doc(strategy: str, seed: int, hp: dict | None, epochs: int | None) -> dict:
    """The workspace's llctl.yaml; ``hp`` None: the shipped defaults (only the strategy and seed set)."""
    tr = copy.deepcopy(hp["training"]) if hp else {}
    tr.update({"strategy": strategy, "seed": seed, "fallback_lookup_key": None})
    if hp:
        tr["epochs"] = epochs
    return {
        "model": {"name": "digits", "architecture": "mlp", **(hp["model"] if hp else {})},
        "store": {"url": "sqlite:///.llctl/state.db"},
        "data": {
            "key": "example_id", "event_time": "event_time", "label": "label", "label_type": "category",
            "label_categories": CLASSES, "holdout_fraction": 0.0, "max_bad_fraction": 0.0,
            "features": [{"name": f, "type": "float", "nullable": False, "min": 0, "max": 16} for f in FEATURES],
        },
        "drift": {"on_ingest": False},
        "registry": {"kind": "local", "root": ".llctl/artifacts"},
        "training": tr,
    }


def new_workspace(root: Path, name: str, doc: dict):
    from lifelong_cli.context import AppContext
    from lifelong_cli.ops.init import init

    ws = root / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
    ws.mkdir()
    (ws / "llctl.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    init(AppContext(cwd=root, env=env, actor="bench"), directory=str(ws))  # keeps this llctl.yaml; makes .llctl/
    return AppContext(cwd=ws, env=env, actor="bench")


class Scorer:
    """Accuracy of a committed version's ONNX artifact (as served) on raw test rows."""

    def __init__(self, tasks: list[dict]) -> None:
        self.tests = [(table_of(t["x_test"]), t["y_test"]) for t in tasks]

    def accuracies(self, ctx, artifacts: dict) -> list[float]:
        import json

        import onnxruntime as ort

        from lifelong_cli.registry.base import ArtifactRef, open_registry
        from lifelong_cli.training.onnx_export import onnx_inputs
        from lifelong_cli.training.preprocess import Preprocessor

        reg = open_registry(ctx)
        pre = Preprocessor.from_dict(json.loads(reg.fetch(ArtifactRef.from_dict("preprocess", artifacts["preprocess"]))))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(reg.fetch(ArtifactRef.from_dict("onnx", artifacts["onnx"])), opts,
                                    providers=["CPUExecutionProvider"])
        classes = np.asarray([int(c) for c in pre.classes])
        out = []
        for tbl, y in self.tests:
            scores = sess.run(["scores"], onnx_inputs(pre, tbl))[0]
            out.append(float((classes[scores.argmax(1)] == y).mean()))
        return out


class Run:
    """One scenario × strategy × seed: a fresh workspace, fed task by task (``cli``: through the binary)."""

    def __init__(self, root: Path, scenario: str, strategy: str, seed: int, hp: dict | None, epochs: int | None,
                 *, cli: bool = False, label: str | None = None) -> None:
        self.scenario, self.strategy, self.seed, self.cli = scenario, label or strategy, seed, cli
        self.joint = strategy == "joint"
        doc = config_doc("naive" if self.joint else strategy, seed, hp, epochs)
        self.ctx = new_workspace(root, f"{scenario}-{self.strategy.replace('+', '_')}-{seed}", doc)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LLCTL_")}
        self.R: list[list[float]] = []
        self.train_s = 0.0
        self.train_cpu = 0.0
        self.rows = 0
        self.steps: list[int] = []
        self.releases = 0  # batches the label audit (or a drift check) held and the curriculum released

    def _llctl(self, *args: str, ok: tuple[int, ...] = (0,)) -> dict:
        p = subprocess.run([LLCTL, *args, "--json"], cwd=self.ctx.cwd, env=self.env, capture_output=True, text=True)
        if p.returncode not in ok:
            raise SystemExit(f"llctl {' '.join(args)} failed ({p.returncode}) in {self.ctx.cwd}:\n{p.stdout}\n{p.stderr}")
        return json.loads(p.stdout)

    def task(self, t: int, task: dict, last: bool, scorer: Scorer) -> None:
        """Ingest task t's training rows; train (joint: only after the last task); score every test split."""
        from lifelong_cli.ops.ingest import ingest
        from lifelong_cli.ops.train import train

        where = f"{self.scenario}/{self.strategy}/seed {self.seed} task {t}"
        csv_path = self.ctx.cwd / f"task{t}.csv"
        pcsv.write_csv(table_of(task["x_train"], task["y_train"], task=t, start=self.rows), csv_path)
        self.rows += len(task["x_train"])
        why = f"task {t} of the {self.scenario} curriculum: a planned shift"
        if self.cli:
            res = self._llctl("ingest", str(csv_path), ok=(0, 3))
            status, accepted, msg = res["status"], res["rows_accepted"], res["message"]
            if status == "held":  # a new task's classes or inputs: released as on-call would a planned launch
                self._llctl("data", "release", str(res["batch"]), "--reason", why)
                status, self.releases = "accepted", self.releases + 1
        else:
            r = ingest(self.ctx, path=str(csv_path))
            status, accepted, msg = r.status, r.rows_accepted, r.message
            if status == "held":
                from lifelong_cli.ops.holds import data_release

                data_release(self.ctx, batch=r.batch, reason=why)
                status, self.releases = "accepted", self.releases + 1
        if status != "accepted" or accepted != len(task["x_train"]):
            raise SystemExit(f"{where}: ingest {status}: {msg}")
        if self.joint and not last:
            return
        if self.cli:
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            doc = self._llctl("train")
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.train_s += time.perf_counter() - t0
            self.train_cpu += (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
            status, msg, artifacts, steps = doc["status"], doc["message"], doc["artifacts"], doc["metrics"].get("steps")
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            tr = train(self.ctx)
            self.train_s += time.perf_counter() - t0
            self.train_cpu += time.process_time() - c0
            status, msg, artifacts, steps = tr.status, tr.message, tr.artifacts, tr.metrics.get("steps")
        if status != "trained":
            raise SystemExit(f"{where}: train {status}: {msg}")
        self.steps.append(steps)
        self.R.append(scorer.accuracies(self.ctx, artifacts))

    def close(self) -> None:
        self.ctx.close()


def warm_up(root: Path, hp: dict, cli: bool = False) -> None:
    """One small ingest + train + score, not measured: the first train in a process pays one-time
    costs (lazy imports, the ONNX exporter) that would otherwise be charged to whichever strategy runs
    first (with --cli: the file cache for the binary's imports)."""
    tasks = make_tasks("Split-Digits", 0)[:1]
    run = Run(root, "warm-up", "naive", 0, hp, 1, cli=cli)
    try:
        run.task(0, tasks[0], True, Scorer(tasks))
    finally:
        run.close()


def metrics(R: np.ndarray) -> dict[str, float]:
    T = R.shape[1]
    out = {"acc": float(R[-1].mean())}
    if R.shape[0] == T:
        out["bwt"] = float(np.mean([R[T - 1, i] - R[i, i] for i in range(T - 1)]))
        out["forget"] = float(np.mean([R[i:T - 1, i].max() - R[T - 1, i] for i in range(T - 1)]))
    return out


# ---------------------------------------------------------------------------------------------
# report


def ms(vals: list[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def fmt(vals: list[float] | None, prec: int = 3) -> str:
    if not vals:
        return "—"
    m, s = ms(vals)
    return f"{m:.{prec}f} ± {s:.{prec}f}"


def apply_sets(hp: dict, sets: list[str]) -> dict:
    hp = copy.deepcopy(hp)
    for item in sets:
        key, _, raw = item.partition("=")
        parts = key.split(".")
        cur = hp
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = yaml.safe_load(raw)
    return hp


def make_runs(root: Path, scenario: str, seed: int, args, hp: dict, epochs: int) -> list[Run]:
    if args.defaults:
        from lifelong_cli.config import TrainingSettings

        default = TrainingSettings().strategy
        tuned = copy.deepcopy(hp)
        return [Run(root, scenario, "naive", seed, None, None, cli=args.cli, label="naive"),
                Run(root, scenario, default, seed, None, None, cli=args.cli, label="default"),
                Run(root, scenario, "ewc+replay", seed, tuned, epochs, cli=args.cli, label="tuned")]
    return [Run(root, scenario, strategy, seed, hp, epochs, cli=args.cli) for strategy in args.strategies]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help=f"1 seed, {QUICK_EPOCHS} epochs: a smoke run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a shared hyperparameter for every strategy (--defaults: of the tuned arm), "
                         "e.g. training.epochs=20")
    ap.add_argument("--scenario", choices=SCENARIOS, action="append", help="only this scenario (repeatable)")
    ap.add_argument("--strategy", choices=STRATEGIES, action="append", help="only this strategy (repeatable)")
    ap.add_argument("--cli", action="store_true", help="drive the llctl binary (ingest, train) in subprocesses")
    ap.add_argument("--defaults", action="store_true",
                    help="the shipped defaults: arms naive, default (training.strategy) and tuned (HPARAMS)")
    args = ap.parse_args()
    seeds = 1 if args.quick else args.seeds
    if seeds < 1:
        ap.error("--seeds must be at least 1")
    if args.defaults and args.strategy:
        ap.error("--defaults runs the arms naive, default and tuned; --strategy does not apply")
    hp = apply_sets(HPARAMS, args.set)
    epochs = QUICK_EPOCHS if args.quick and not any(s.startswith("training.epochs=") for s in args.set) \
        else hp["training"]["epochs"]
    scenarios = args.scenario or list(SCENARIOS)
    args.strategies = args.strategy or list(STRATEGIES)
    strategies = list(DEFAULT_ARMS) if args.defaults else args.strategies

    t_all = time.perf_counter()
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="llctl-continual-") as tmp:
        root = Path(tmp)
        warm_up(root, hp, args.cli)
        for scenario in scenarios:
            for seed in range(seeds):
                tasks = make_tasks(scenario, seed)
                scorer = Scorer(tasks)
                # strategies interleaved task by task, so that machine noise hits them alike
                runs = make_runs(root, scenario, seed, args, hp, epochs)
                try:
                    for t, task in enumerate(tasks):
                        for run in runs:
                            run.task(t, task, t == len(tasks) - 1, scorer)
                finally:
                    for run in runs:
                        run.close()
                for run in runs:
                    m = metrics(np.asarray(run.R))
                    m["time"], m["cpu"], m["steps"] = run.train_s, run.train_cpu, run.steps
                    results.setdefault((scenario, run.strategy), []).append(m)
                    extra = f"  BWT {m['bwt']:+.3f}  forgetting {m['forget']:.3f}" if "bwt" in m else ""
                    print(f"  {scenario:<16}{run.strategy:<11}seed {seed}  ACC {m['acc']:.3f}{extra}  "
                          f"train {m['time']:.1f}s  steps {run.steps}  held+released {run.releases}",
                          file=sys.stderr, flush=True)
    wall = time.perf_counter() - t_all

    tr = hp["training"]
    path = "the llctl binary (ingest, train)" if args.cli else "llctl's ingest/train ops"
    print(f"continual learning through {path} and the served ONNX artifact; {seeds} seed(s), "
          f"{os.cpu_count()} cores, {wall:.0f} s wall")
    shared = (f"model.hidden={hp['model']['hidden']} dropout={hp['model']['dropout']} "
              f"epochs={epochs} batch_size={tr['batch_size']} learning_rate={tr['learning_rate']} "
              f"grad_clip={tr['grad_clip']} replay.buffer_size={tr['replay']['buffer_size']} "
              f"replay.new_ratio={tr['replay']['new_ratio']} ewc.ewc_lambda={tr['ewc']['ewc_lambda']} "
              f"ewc.fisher_samples={tr['ewc']['fisher_samples']}")
    if args.defaults:
        from lifelong_cli.config import ModelSettings, TrainingSettings

        d, m = TrainingSettings(), ModelSettings()
        print(f"naive, default ({d.strategy}): the shipped defaults — model.hidden={m.hidden} dropout={m.dropout} "
              f"epochs={d.epochs} (adaptive) min_steps={d.min_steps} max_epochs={d.max_epochs} patience={d.patience} "
              f"batch_size={d.batch_size} learning_rate={d.learning_rate} continued_lr_factor={d.continued_lr_factor} "
              f"preprocess.scale_floor={d.preprocess.scale_floor} preprocess.clip={d.preprocess.clip} "
              f"replay.buffer_size={d.replay.buffer_size} ewc.fisher_samples={d.ewc.fisher_samples}")
        print(f"tuned (ewc+replay): {shared}")
    else:
        print(f"shared hyperparameters: {shared}; joint: naive, one train on all tasks, {epochs} epochs")
    for scenario in scenarios:
        print(f"\n{scenario} ({N_TASKS} tasks)")
        print(f"{'strategy':<12}{'ACC':>16}{'BWT':>18}{'forgetting':>16}{'train wall s':>16}{'train CPU s':>16}"
              f"{'steps/train':>13}")
        for strategy in strategies:
            rs = results[(scenario, strategy)]
            steps = [s for r in rs for s in r["steps"] if s is not None]
            print(f"{strategy:<12}{fmt([r['acc'] for r in rs]):>16}"
                  f"{fmt([r['bwt'] for r in rs if 'bwt' in r]):>18}"
                  f"{fmt([r['forget'] for r in rs if 'forget' in r]):>16}"
                  f"{fmt([r['time'] for r in rs], 1):>16}{fmt([r['cpu'] for r in rs], 1):>16}"
                  f"{(statistics.fmean(steps) if steps else 0):>13.0f}")

    def mean(scenario: str, strategy: str, key: str) -> float | None:
        rs = results.get((scenario, strategy))
        return statistics.fmean(r[key] for r in rs) if rs else None

    checks = defaults_checks(scenarios, mean) if args.defaults else strategy_checks(scenarios, mean)
    print("\ntargets")
    ok = True
    for text, good in checks:
        ok &= bool(good)
        print(f"  {text}: {'met' if good else 'MISSED'}")
    return 0 if ok else 1


def defaults_checks(scenarios: list[str], mean) -> list[tuple[str, bool]]:
    checks = []
    floors = {"Split-Digits": TARGET_SPLIT_ACC, "Permuted-Digits": TARGET_PERM_ACC}
    for scenario in scenarios:
        a, tuned = mean(scenario, "default", "acc"), mean(scenario, "tuned", "acc")
        checks.append((f"{scenario}: default ACC {a:.3f} ≥ {floors[scenario]:.2f}", a >= floors[scenario]))
        checks.append((f"{scenario}: default ACC {a:.3f} within {TARGET_TUNED_GAP:.2f} of tuned {tuned:.3f} "
                       f"(≥ {tuned - TARGET_TUNED_GAP:.3f})", a >= tuned - TARGET_TUNED_GAP))
        tn, td = mean(scenario, "naive", "time"), mean(scenario, "default", "time")
        cn, cd = mean(scenario, "naive", "cpu"), mean(scenario, "default", "cpu")
        checks.append((f"{scenario}: default train wall time {td:.1f} s ≤ {TARGET_TIME_RATIO} × naive's {tn:.1f} s "
                       f"(ratio {td / tn:.2f}; CPU-time ratio {cd / cn:.2f})", td <= TARGET_TIME_RATIO * tn))
    return checks


def strategy_checks(scenarios: list[str], mean) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    if "Split-Digits" in scenarios:
        accs = {s: mean("Split-Digits", s, "acc") for s in ("replay", "ewc+replay")}
        accs = {s: a for s, a in accs.items() if a is not None}
        if accs:
            best = max(accs, key=accs.get)
            checks.append((f"Split-Digits: replay or ewc+replay ACC ≥ {TARGET_SPLIT_ACC:.2f} "
                           f"(best {best} {accs[best]:.3f})", accs[best] >= TARGET_SPLIT_ACC))
    if "Permuted-Digits" in scenarios:
        a = mean("Permuted-Digits", "ewc+replay", "acc")
        if a is not None:
            checks.append((f"Permuted-Digits: ewc+replay ACC ≥ {TARGET_PERM_ACC:.2f} ({a:.3f})", a >= TARGET_PERM_ACC))
    for scenario in scenarios:
        cont = {s: mean(scenario, s, "acc") for s in CONTINUAL if s != "naive" and mean(scenario, s, "acc") is not None}
        naive_f = mean(scenario, "naive", "forget")
        if cont and naive_f is not None:
            best = max(cont, key=cont.get)
            bf = mean(scenario, best, "forget")
            checks.append((f"{scenario}: forgetting of the best strategy ({best}) {bf:.3f} ≤ {TARGET_FORGET_RATIO} × "
                           f"naive's {naive_f:.3f} = {TARGET_FORGET_RATIO * naive_f:.3f}",
                           bf <= TARGET_FORGET_RATIO * naive_f))
        tn, te = mean(scenario, "naive", "time"), mean(scenario, "ewc+replay", "time")
        if tn is not None and te is not None:
            cn, ce = mean(scenario, "naive", "cpu"), mean(scenario, "ewc+replay", "cpu")
            checks.append((f"{scenario}: ewc+replay train wall time {te:.1f} s ≤ {TARGET_TIME_RATIO} × naive's {tn:.1f} s "
                           f"(ratio {te / tn:.2f}; CPU-time ratio {ce / cn:.2f})", te <= TARGET_TIME_RATIO * tn))
    return checks


if __name__ == "__main__":
    sys.exit(main())
