"""Plant realistic one-line slips in a copy of the repo, one at a time, and run the suite on each.

A slip the suite does not catch is a published number (or served data) that could go wrong
unnoticed. The list's score should stay at 100 %.

    python tests/mutants.py                 # every slip, the whole suite each (-x: stops at the first failure)
    python tests/mutants.py --only 3,7      # some of them
    python tests/mutants.py --list          # print the slips

Not collected by pytest (its name does not start with test_).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (file, the line as it is, the slip, what would go wrong)
SLIPS = [
    ("study/training/loop.py", "    for optimizer in optimizers:\n        optimizer.zero_grad()",
     "    optimizers[0].zero_grad()", "Task 2's decoder Adam accumulates gradients over steps"),
    ("study/analysis/evidence.py", '"red_green": r - g,', '"red_green": g - r,',
     "the R-G colour signal has its sign swapped"),
    ("study/reporting/facts.py", 'pct(r["task1_accuracy"]), pct(r["task2_accuracy"]),',
     'pct(r["task1_accuracy"]), pct(r["task1_accuracy"]),',
     "the seeds table shows Task 1's accuracy in the Task 2 column"),
    ("data.py", "    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino",
     "    return info.st_size, 0, 0, 0", "the cache key knows only the files' sizes"),
    ("study/core/files.py", "        _fsync(tmp)  # the data reaches the disk before the new name does",
     "        pass", "atomic writes rename a file whose data may not be on the disk"),
    ("models.py", "    return per_image.mean()", "    return per_image.sum()",
     "L_rec sums over the batch instead of averaging"),
    ("data.py", "return images.float().div_(255).sub_(0.5).div_(0.5)",
     "return images.float().div_(255).sub_(0.5)", "normalisation to [-0.5, 0.5] instead of [-1, 1]"),
    ("study/analysis/evidence.py", "p = binomtest(int(counts[top]), k, float(base[top]), alternative=\"greater\").pvalue",
     "p = binomtest(int(counts[top]), k, float(base[top])).pvalue",
     "the class make-up test is two-sided"),
    ("study/analysis/evidence.py", "    return (position // width) * stride - offset, (position % width) * stride - offset, size",
     "    return (position % width) * stride - offset, (position // width) * stride - offset, size",
     "the receptive-field box has rows and columns swapped"),
    ("study/analysis/evidence.py", "centre.mean(dim=(1, 2)) - surround",
     "surround - centre.mean(dim=(1, 2))", "centre-surround has its sign swapped"),
    ("explorer/explorer.js", "if (v > best || Number.isNaN(v))", "if (v >= best || Number.isNaN(v))",
     "the page's max-pool keeps the last of tied maxima, not PyTorch's first"),
    ("explorer/explorer.js", "x[i] = Math.fround(Math.fround(Math.fround(pixels[i] / 255) - 0.5) / 0.5);",
     "x[i] = Math.fround(Math.fround(pixels[i] / 255) - 0.5);",
     "the page normalises differently from the network's training"),
    ("study/analysis/decoders.py", "other = own.apply(lambda t: t.roll(1, 0))",
     "other = own.apply(lambda t: t.roll(0, 0))",
     "the 'other image' controls use the image itself"),
    ("study/runs/summary.py", '"difference": round(task2["test_accuracy"] - task1["test_accuracy"], 2),',
     '"difference": round(task1["test_accuracy"] - task2["test_accuracy"], 2),',
     "the per-seed difference has its sign swapped"),
    ("study/reporting/facts.py", "best, worst = max(per_class, key=per_class.get), min(per_class, key=per_class.get)",
     "worst, best = max(per_class, key=per_class.get), min(per_class, key=per_class.get)",
     "the report swaps the best and worst class"),
    ("study/analysis/findings.py", '(255, "blue")', '(255, "green")',
     "blue patches are named green"),
    ("study/analysis/evidence.py", "        maps[f\"edge_{angle}\"] = (math.cos(across) * gx - math.sin(across) * gy) ** 2",
     "        maps[f\"edge_{angle}\"] = (math.cos(across) * gx + math.sin(across) * gy) ** 2",
     "diagonal edge orientations are swapped"),
    ("study/training/loop.py", "10 * math.log10(1 / mse)", "10 * math.log10(255 / mse)",
     "PSNR on the wrong peak value"),
    # the statistics the report publishes (issue 22)
    ("study/training/loop.py", "math.sqrt(accuracy * (1 - accuracy) / len(labels))",
     "math.sqrt(accuracy * (1 - accuracy) / (len(labels) - 1))",
     "the accuracy's standard error divides by n - 1"),
    ("study/training/loop.py", "100.0 * math.sqrt(0.25 / max(confusion[i].sum().item(), 1)) for i in range(n)), 2),",
     "100.0 * math.sqrt(0.25 / max(confusion[i].sum().item(), 1)) for i in range(n - 1)), 2),",
     "the largest per-class standard error skips the last class"),
    ("study/training/loop.py", "confusion = torch.bincount(labels * n + predictions, minlength=n * n).reshape(n, n)",
     "confusion = torch.bincount(predictions * n + labels, minlength=n * n).reshape(n, n)",
     "the confusion matrix is transposed (rows: predictions)"),
    ("study/runs/summary.py", 'round(2 * stats.t.sf(abs(t), n - 1), 3)', 'round(stats.t.sf(abs(t), n - 1), 3)',
     "the paired t-test over seeds is one-sided"),
    ("study/runs/summary.py", '"sd": round(statistics.stdev(values), 2)', '"sd": round(statistics.pstdev(values), 2)',
     "the seeds' sd is the population sd"),
    ("study/analysis/evidence.py", "pooled = (((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / (len(a) + len(b) - 2)).sqrt()",
     "pooled = b.std()", "Cohen's d divides by the reference's sd only"),
    ("train_deconv.py", 'results["image mean colour"] = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean().item()',
     'results["image mean colour"] = (x - x.mean(dim=(1, 2, 3), keepdim=True)).pow(2).mean().item()',
     "the image-mean-colour baseline uses the mean grey"),
    ("models.py", "                z = F.conv_transpose2d(h, weight, padding=stage.padding)",
     "                z = F.conv_transpose2d(h, weight, weight.new_full((weight.shape[1],), 0.1), padding=stage.padding)",
     "the tied deconvnet adds a bias"),
    ("study/analysis/evidence.py", "    return mean, (x.hypot(y) / w.sum().clamp_min(1e-12)).item()",
     "    return mean, (x.hypot(y) / len(w)).item()", "the hue consistency ignores the weights"),
    ("study/analysis/nulls.py", "        running = max(running, min(1.0, (m - rank) * p_values[i]))",
     "        running = max(running, min(1.0, m * p_values[i]))",
     "the Holm correction is Bonferroni's"),
    ("models.py", "        for stage in reversed(self.arch.layers[:layer]):",
     "        for stage in reversed(self.arch.layers[:max(layer - 1, 1)]):",
     "decoding a deep layer skips a stage of the mirror"),
    ("study/runs/summary.py", '        task2 = metrics.get(("task2", seed, DEFAULT_LAMBDA))',
     '        task2 = metrics.get(("task2", seed, 1e-2))',
     "the summary finds the seed runs at a typed lambda, not at the default"),
    ("make_beyond_report.py", '    for entry, adjusted in zip(counted, holm([e["count"]["p_value"] for e in counted])):',
     '    for entry, adjusted in zip(counted, [e["count"]["p_value"] for e in counted]):',
     "the depth report's channel counts go uncorrected for the number of layers"),
    ("study/training/recipes.py", "            x = torch.stack([padded[i, :, p + down:p + down + h, p + right:p + right + w]",
     "            x = torch.stack([padded[i, :, p + right:p + right + h, p + down:p + down + w]",
     "the fast recipe's translations swap their axes"),
    ("probe_layers.py", '        tests = [(layer, name, mcnemar(correct["trained"], correct[name]))',
     '        tests = [(layer, name, mcnemar(correct[name], correct[name]))',
     "every probe baseline is compared with itself, never with the trained layer"),
    ("study/analysis/nulls.py", "        keys = images * units + positions",
     "        keys = images + positions * units",
     "the nulls' cached patch measures are read for the wrong image and unit"),
    ("study/analysis/nulls.py", "        missing = missing[~done[missing]]", "        pass",
     "every draw measures its receptive-field patches again (the cache is never read)"),
    ("study/training/recipes.py", "enabled=FAST_AUTOCAST is not None", "enabled=False",
     "the fast recipe trains in float32 throughout, about half as fast"),
    ("study/analysis/occlusion.py", "top, channel, positions.flatten()[pairs],",
     "top, channel, positions.flatten()[channel],",
     "occlusion projects each active channel at another image's strongest unit"),
    ("study/analysis/nulls.py", "        first = min(changed)", "        first = max(changed)",
     "a cascade's null draws keep trained stages it re-initialised"),
    ("models.py", "        for stage in self.arch.layers[:through]:",
     "        for stage in self.arch.layers[:through or 1]:",
     "the encoder stops after its first stage unless told where to stop"),
    ("probe_layers.py", "    differing = [key for key in expected if found[key] != expected[key]]",
     "    differing = []", "--pixels-from reads a floor fitted with another protocol or data"),
    ("study/analysis/decoders.py",
     "            if id(model) not in encoded:\n                encoded[id(model)] = model.encode(x)",
     "            if not encoded:\n                encoded = {id(m): model.encode(x) for m, _, _ in decoders.values()}",
     "decoder checks decode every model's batch from the first model's latents"),
    ("study/reporting/latent_plots.py", "divmod(position, z_map.shape[-1])",
     "divmod(position, z_map.shape[-2])",
     "the single-channel figure's peak marker reads the map's height as its width"),
    ("study/analysis/nulls.py", 'if (g == "rotation") == (question == "single_channel")]',
     'if (g == "rotation") != (question == "single_channel")]',
     "the two questions read each other's nulls: random networks answer 'single channel?'"),
    ("study/analysis/nulls.py", "    allowed = math.floor(alpha * (1 + len(null))) - 1",
     "    allowed = math.floor(alpha * (1 + len(null)))",
     "the power column claims a count one draw weaker would have passed"),
    ("study/reporting/claims.py", '    return m["task2"]["task1_comparison"]["mcnemar"]["p_value"] >= ALPHA',
     '    return m["task2"]["task1_comparison"]["mcnemar"]["p_value"] >= 0',
     "the report says 'no evidence of a difference' whatever McNemar's test gives"),
    ("study/reporting/page_check.py", "if (box.page, box.y0) > (heading.page, heading.y0)]",
     "if (box.page, box.y0) > (heading.page + 1, heading.y0)]",
     "a figure on the References' own page, below them, passes the layout check"),
    ("study/reporting/plots.py", 'ax.text(j, i, f"{100 * rate:.0f}", ha="center"',
     'ax.text(j, i, str(counts[i, j]), ha="center"',
     "the confusion matrix prints three-digit counts that run together"),
    ("data.py", "        found = next((i for i in members if i not in taken), None)",
     "        found = next((i for i in members), None)",
     "Figure 1 shows the first ship twice instead of the tutorial's two ships"),
    ("explorer/explorer.js", "claims.filter(claim => claim[key] === true)",
     "claims.filter(claim => claim.survives === true)",
     "the explorer's badge names the combined verdict under both of the report's questions"),
    ("study/analysis/task3_result.py", "        if t not in corners or left not in corners or found != side:",
     "        if t not in corners or left not in corners:",
     "Task 3's reader takes top-9 boxes of any side, not the layer's receptive field"),
    ("study/analysis/task3_result.py", '        if row["channel"] != k:',
     "        if False:", "Task 3's reader takes a layer's rows in any order (the cards and the "
     "tables would name the wrong channel)"),
    ("study/analysis/task3_result.py",
     '"images": self.images, "top9": {layer.name: layer.top9 for layer in self.layers},',
     '"images": self.images, "top9": {layer.name: layer.top9 for layer in self.layers[:1]},',
     "Task 3's writer drops the strongest images of every layer but the first"),
    ("train_deconv.py", "        if step in steps:", "        if step + 1 in steps:",
     "every snapshot is saved one mini-batch early (the last is not the finished network)"),
    ("formation.py", '            row["same_units"][layer]["settled"] = sum(p < ALPHA for p in row["same_units"][layer]["p_holm"])',
     '            row["same_units"][layer]["settled"] = sum(p < ALPHA for p in row["same_units"][layer]["p"])',
     "a channel counts as settled on its uncorrected p"),
    ("explorer/explorer.js", "cardPixels[start + c * PLANE + (top + y) * SIDE + left + x]",
     "cardPixels[start + c * PLANE + (top + y) * SIDE + x]",
     "the page cuts a deep layer's top patches from the image's left edge, not the unit's field"),
    ("make_beyond_report.py", '    require_complete(path.parent, "the folder", fix)\n',
     "", "beyond.pdf is built from folders whose runs did not finish"),
    ("study/analysis/invariance.py", "    return moved[..., FRAME:-FRAME, FRAME:-FRAME]",
     "    return moved[..., FRAME - 1:-FRAME - 1, FRAME - 1:-FRAME - 1]",
     "every turned or scaled copy is cut one pixel up and left of the image"),
    ("study/analysis/invariance.py",
     '            nulls = [r[kind]["distance"][layer][r[kind]["amounts"].index(far)] for r in random]',
     '            nulls = [r[kind]["distance"][layer][-1] for r in random]',
     "the random networks are read at their last amount, not the tests' largest"),
    ("study/analysis/invariance.py", "    return math.floor(family / ALPHA + 1e-9)",
     "    return math.ceil(family / ALPHA) - 1",
     "the default draws leave the smallest p exactly at Holm's first step, where nothing survives"),
    ("study/reporting/questions.py",
     '        since = next((rows[k]["epoch"] for k in range(len(rows)) if all(matched[k:])), None)',
     '        since = next((rows[k]["epoch"] for k in range(len(rows)) if matched[k]), None)',
     "a layer counts as matched from a snapshot whose match is lost again later"),
    ("study/reporting/beyond_claims.py",
     '    return all(1 <= layer["everywhere"] < layer["channels"] / 2 for layer in found["layers"])',
     '    return all(layer["everywhere"] < layer["channels"] / 2 for layer in found["layers"])',
     "the companion says 'only a few channels' of a layer where none has a counterpart"),
    ("study/runs/plan.py",
     "    classified = seeds if task1_seeds is None else [s for s in seeds if s in task1_seeds]",
     "    classified = seeds",
     "make depth trains a Task 1 for its second seed, minutes it has not got"),
    ("study/runs/plan.py",
     '        keep = ["--snapshots", snapshots] if snapshots and seed == seeds[0] else []',
     '        keep = ["--snapshots", snapshots] if snapshots else []',
     "every seed's Task 2 keeps snapshots, not only the one formation reads"),
    ("study/runs/identity.py", "            upstream_changed = any(decided[a][0] != UP_TO_DATE for a in run.after)",
     "            upstream_changed = False",
     "a Task 2 is reused though the Task 1 it compares with was trained again"),
    ("study/runs/identity.py", "        if RESULTS_KEY in recorded and recorded[RESULTS_KEY] != file_sha256(results):",
     "        if False:",
     "a run redone by hand since the sweep passes for the sweep's"),
    ("study/runs/identity.py", 'IGNORED_FLAGS = ("--out", "--quiet", "--data-dir")',
     'IGNORED_FLAGS = ("--out", "--quiet", "--data-dir", "--seed")',
     "a run of another seed is reused as this seed's"),
    ("study/core/ids.py", '        return cls(1, "refit") if layer == 1 and depth > 1 else cls.own(layer, depth)',
     '        return cls.own(layer, depth)',
     "z1's pictures are read through Task 2's literal decoder, not the refit"),
    ("study/analysis/convergence.py", "    rows, cols = linear_sum_assignment(-r)",
     "    rows, cols = linear_sum_assignment(r)",
     "the seeds' channels are matched to their least alike partners"),
    ("study/analysis/invariance.py", "            less = (1 + sum(v >= value for v in nulls)) / (1 + len(nulls))",
     "            less = (1 + sum(v <= value for v in nulls)) / (1 + len(nulls))",
     "'less invariant than random networks' is ranked in the wrong direction"),
    ("study/analysis/decoders.py", "    if not all(torch.isfinite(v).all() for v in refit.deconv1.state_dict().values()):",
     "    if False:",
     "a layer-1 cache with NaN weights is used as it is"),
    ("study/runs/folders.py", "        if len(os.fsencode(part)) > NAME_MAX:",
     "        if len(os.fsencode(part)) > 10 * NAME_MAX:",
     "an --out name longer than a file system allows gives a traceback"),
]


def copy_repo(destination: Path) -> None:
    """The files git would ship (tracked and untracked, not ignored), as they are now."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others",
                             "--exclude-standard", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = REPO.parent / "shared"
    if shared.exists():  # the real-data tests look for ../shared beside the repo
        (destination.parent / "shared").symlink_to(shared)


def run_slip(number: int, slip: tuple, pytest_args: list[str], tests: str = "tests") -> tuple[bool, float, str]:
    """(caught, seconds, the first failing test) for one slip."""
    path, before, after, _ = slip
    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder) / "repo"
        copy_repo(repo)
        source = (repo / path).read_text()
        if source.count(before) != 1:
            raise SystemExit(f"slip {number}: the line to change is not exactly once in {path}")
        (repo / path).write_text(source.replace(before, after))
        env = dict(os.environ, CIFAR10_CACHE=str(Path(folder) / "cache"), PYTHONDONTWRITEBYTECODE="1")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                 *pytest_args, *tests.split()], cwd=repo, env=env, capture_output=True,
                                text=True)
        seconds = time.perf_counter() - started
    failed = [line for line in result.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return result.returncode != 0, seconds, failed[0] if failed else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated slip numbers (default: all)")
    parser.add_argument("--list", action="store_true", help="print the slips and stop")
    parser.add_argument("--tests", default="tests",
                        help="test files or folder to run for each slip (default: the whole suite)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()
    chosen = [int(n) for n in args.only.split(",") if n] or list(range(1, len(SLIPS) + 1))
    if args.list:
        for n in chosen:
            print(f"{n:2d}. {SLIPS[n - 1][0]}: {SLIPS[n - 1][3]}")
        return
    caught = 0
    for n in chosen:
        ok, seconds, first = run_slip(n, SLIPS[n - 1], args.pytest_args, args.tests)
        caught += ok
        print(f"{n:2d}. {'caught ' if ok else 'MISSED '} in {seconds:5.0f} s  {SLIPS[n - 1][3]}"
              + (f"  <- {first}" if first else ""), flush=True)
    print(f"score: {caught}/{len(chosen)} slips caught ({100 * caught / len(chosen):.0f} %)")
    sys.exit(0 if caught == len(chosen) else 1)


if __name__ == "__main__":
    main()
