"""The sweep's summary: the per-seed table with McNemar's test, mean ± sd over seeds, the paired
t-test, each seed's settings for the report's provenance check, and the lambda trade-off.

Runs are found by what they are (task, seed, λ: the fields study.runs.plan gives them), never by
their display names.
"""
import statistics
from pathlib import Path

from study.core.layout import METRICS
from study.core.readers import read_json
from study.core.settings import COMPARED_WITH_TASK1, DEFAULT_LAMBDA
from study.reporting import plots
from study.runs.plan import Run
from study.training.loop import mcnemar


def seed_spread(values: list[float]) -> dict:
    """A row of the summary's tables: mean and sample sd over the seeds, rounded to 2 decimals
    (sd None for one seed), and n. nulls.mean_sd is the unrounded pair the statistics use."""
    return {"mean": round(statistics.mean(values), 2),
            "sd": round(statistics.stdev(values), 2) if len(values) > 1 else None, "n": len(values)}


def paired_t_test(differences: list[float]) -> dict | None:
    """Two-sided one-sample t-test of the per-seed differences against 0 (None below 2 seeds)."""
    from scipy import stats

    if len(differences) < 2 or statistics.stdev(differences) == 0:
        return None
    n = len(differences)
    t = statistics.mean(differences) / (statistics.stdev(differences) / n ** 0.5)
    return {"t": round(t, 2), "df": n - 1, "p_value": round(2 * stats.t.sf(abs(t), n - 1), 3)}


def run_settings(metrics: dict) -> dict:
    """The settings and data hash that identify a run (with its accuracy), for provenance."""
    config = metrics.get("config", {})
    return {**{k: config.get(k) for k in COMPARED_WITH_TASK1}, "lambda": metrics.get("lambda"),
            "test_accuracy": metrics.get("test_accuracy")}


def summarize(runs: list[Run], codes: dict[str, int], seeds: list[int],
              lambdas: list[float]) -> dict:
    """Per-seed table, mean +- sd, paired McNemar per seed, and the lambda trade-off."""
    metrics = {}  # (task, seed, λ) of each finished training run -> its metrics
    for run in runs:
        path = run.out / METRICS
        if run.task in ("task1", "task2") and not run.permuted and codes.get(run.name) == 0 \
                and path.is_file():
            metrics[(run.task, run.seed, run.lam)] = read_json(path, "metrics", f"rerun {run.name}")
    per_seed = []
    for seed in seeds:
        task1 = metrics.get(("task1", seed, None))
        task2 = metrics.get(("task2", seed, DEFAULT_LAMBDA))
        if not (task1 and task2):
            continue
        test = mcnemar(_correct(task1), _correct(task2))
        per_seed.append({"seed": seed, "task1_accuracy": task1["test_accuracy"],
                         "task2_accuracy": task2["test_accuracy"],
                         "difference": round(task2["test_accuracy"] - task1["test_accuracy"], 2),
                         "task2_psnr_db": task2["test_psnr_db"],
                         "task1_train_seconds": task1["train_seconds"],
                         "task2_train_seconds": task2["train_seconds"], "mcnemar": test,
                         # what the report checks task1/ and task2/ against (provenance)
                         "task1_settings": run_settings(task1), "task2_settings": run_settings(task2)})
    summary = {"seeds": seeds, "per_seed": per_seed, "failed_runs": sorted(n for n, c in codes.items() if c)}
    if per_seed:
        summary["task1_accuracy"] = seed_spread([r["task1_accuracy"] for r in per_seed])
        summary["task2_accuracy"] = seed_spread([r["task2_accuracy"] for r in per_seed])
        summary["difference"] = seed_spread([r["difference"] for r in per_seed])
        summary["paired_t_test"] = paired_t_test([r["difference"] for r in per_seed])
        summary["seeds_task2_lower"] = sum(r["difference"] < 0 for r in per_seed)
        summary["seeds_mcnemar_significant"] = sum(r["mcnemar"]["p_value"] < 0.05 for r in per_seed)
        summary["task2_psnr_db"] = seed_spread([r["task2_psnr_db"] for r in per_seed])
        # per class, the spread over seeds: the yardstick a per-class difference is read against
        runs = {task: [metrics[(task, r["seed"], lam)] for r in per_seed]
                for task, lam in (("task1", None), ("task2", DEFAULT_LAMBDA))}
        if all("per_class_accuracy" in m for found in runs.values() for m in found):
            summary["per_class_accuracy"] = {
                task: {name: seed_spread([m["per_class_accuracy"][name] for m in found])
                       for name in found[0]["per_class_accuracy"]}
                for task, found in runs.items()}
    sweep = []
    for lam in lambdas:
        keys = [("task2", s, lam) for s in (seeds if lam == DEFAULT_LAMBDA else seeds[:1])]
        found = [metrics[k] for k in keys if k in metrics]
        if found:
            sweep.append({"lambda": lam, "seeds": [m["config"]["seed"] for m in found],
                          "accuracy": seed_spread([m["test_accuracy"] for m in found]),
                          "psnr_db": seed_spread([m["test_psnr_db"] for m in found])})
    summary["lambda_sweep"] = sweep
    first_task2 = metrics.get(("task2", seeds[0], DEFAULT_LAMBDA))
    if first_task2:
        summary["psnr_baselines_db"] = first_task2["psnr_baselines_db"]
    return summary


def _correct(metrics: dict) -> list[bool]:
    """Which test images a run classified correctly (one class digit per image in both strings)."""
    return [p == t for p, t in zip(metrics["test_predictions"], metrics["test_labels"])]


def sweep_figure(summary: dict, path: Path) -> None:
    """Accuracy and PSNR against lambda; error bars are the sd over seeds where there are several."""
    rows = summary["lambda_sweep"]
    fig, (left, right) = plots.plt.subplots(1, 2, figsize=(4.4, 3.0))
    x = list(range(len(rows)))
    names = [f"{r['lambda']:g}" for r in rows]
    for ax, key, label in ((left, "accuracy", "test accuracy (%)"), (right, "psnr_db", "test PSNR (dB)")):
        ax.errorbar(x, [r[key]["mean"] for r in rows], yerr=[r[key]["sd"] or 0 for r in rows],
                    marker="o", capsize=3, color="tab:blue", label="Task 2 (error bar: sd over seeds)")
        ax.set_xticks(x, names)
        ax.set_xlabel("λ (weight of L_rec in eq. (1))")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "task1_accuracy" in summary:
        t1 = summary["task1_accuracy"]
        left.axhline(t1["mean"], color="grey", linestyle="--", label=f"Task 1, mean of {t1['n']} seeds")
        if t1["sd"]:
            left.axhspan(t1["mean"] - t1["sd"], t1["mean"] + t1["sd"], color="grey", alpha=0.15)
    for (name, value), style in zip(summary.get("psnr_baselines_db", {}).items(), (":", "-.", "--", (0, (1, 3)))):
        right.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    left.set_title("accuracy")
    right.set_title("reconstruction")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=45)
    handles = {}
    for ax in (left, right):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=2, fontsize=7,
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.tight_layout(w_pad=0.5, rect=(0, 0.2, 1, 1))
    plots.save(fig, path)
