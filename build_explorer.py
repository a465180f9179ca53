"""The channel explorer: one offline HTML file in which the trained network runs in the page.

study/reporting/explorer_page.py writes the page; this is its command line. `write_explorer` embeds the Task 2 model's weights (and the layer-1 decoder that Task 3 fits on
the real z1) as float32, optional models to compare with (their fully connected layers as
float16, convolutions and decoder float32), a gallery of test images as
uint8, the architecture (`net.arch.describe()`: every map shape, padding, channel count and
receptive field the page uses) and each channel's card from Task 3's metrics into
explorer/explorer.html, together with explorer/explorer.js and explorer/explorer.css, so the
result is a single file that opens from file:// with no network request. The page computes
everything itself (encoder, classifier head, the decoder of every layer, occlusion maps) in
plain JavaScript, for a network of any depth of the kind models.py describes.

From the command line, any Task 2 checkpoint(s) of one architecture (the one recorded in the
metrics.json beside each, e.g. the tutorial's or --arch deep4):

    python build_explorer.py outputs/task2/deconv_net.pth [more.pth ...] --out page.html \
        [--task3 outputs/task3/metrics.json]

The first checkpoint is the page's default model (float32, exact; a network too large for the
page, such as deep4, keeps its encoder and head float32 and stores its decoder as float16); the
others are embedded as models to switch to (fully connected layers float16). Channel cards are
included when a Task 3 metrics file is given.
"""
import hashlib
import re
from pathlib import Path

import torch

from data import load_cifar10
from models import DeconvNet, fold_batchnorm
from study.analysis.task3_result import read_task3
from study.core.common import ArgumentParser, UsageError, add_data_arguments, run_cli, say
from study.core.ids import ModelId
from study.core.layout import BASELINE_MODELS, METRICS, Outputs
from study.core.readers import field, load_torch_file, read_json, require, require_complete
from study.core.text import plural
from study.reporting.explorer_page import (DEFAULT_ID, ID_LENGTH, MAX_BYTES, PAGE_MARK, PageContent,
                                           write_explorer)
from study.runs.folders import check_output_dir
from study.training.checkpoints import architecture_beside, load_model

# --- the command line: a page from any Task 2 checkpoint(s) ---

def _describe_checkpoint(path: Path) -> tuple[str, str, dict]:
    """(id, label, {kind, lambda, randomised}) for a checkpoint: from the model.json Task 3
    writes beside the randomised models it saves (the folder names the re-initialised layers or
    the permuted labels), else from the Task 2 metrics beside it when there are any."""
    described = path.with_name("model.json")
    if described.is_file():
        label = field(read_json(described, "model description", DESCRIPTION_FIX), "label", str,
                      1, 200, str(described), DESCRIPTION_FIX)
        if label:
            try:
                model = ModelId.from_json(read_json(described, "model description",
                                                    DESCRIPTION_FIX).get("model"))
            except ValueError as error:
                raise UsageError(f"{described}: model: {error}; {DESCRIPTION_FIX}") from None
            return str(model)[:ID_LENGTH], label, {"model": model}
    metrics = path.with_name(METRICS)
    config = {}
    if metrics.is_file():
        fix = "rerun train_deconv.py into that folder, or leave the checkpoint out"
        config = require(read_json(metrics, "Task 2 metrics", fix).get("config", {}), dict,
                         what=f"{metrics}: config", fix=fix)
        for key, kind, low in (("lambda", float, 0), ("seed", int, 0)):
            if key in config:
                require(config[key], kind, low, None, f"{metrics}: config: {key}", fix)
    if "lambda" in config and "seed" in config:
        model = ModelId("lambda", config["seed"], lam=float(config["lambda"]))
        kind = "permuted" if config.get("permute_labels") else "lambda"
        return (str(model)[:ID_LENGTH], f"λ = {model.lam:g}, seed {model.seed} ({path.parent.name})",
                {"kind": kind, "lambda": model.lam})
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{path.parent.name}_{path.stem}").lstrip("_.-")
    return (slug or "model")[:64], str(path), {}


DESCRIPTION_FIX = "rerun visualize_latents.py (which writes it), or leave the checkpoint out"
REFIT_KEYS = ("checkpoint_sha256", "data_sha256", "epochs", "seed")


def _layer1_decoder(path: Path, net: DeconvNet, data_sha256: str,
                    measured: dict | None = None) -> torch.nn.ConvTranspose2d | None:
    """The refitted deconv1 Task 3 cached beside this checkpoint, if it was fitted for it.

    A cache fitted on other data than the data loaded here is refused (one line); with
    `measured` (the layer1_refit of the --task3 metrics, for the first checkpoint) the cache
    must be the decoder Task 3 measured: same checkpoint, data, epochs and seed.
    """
    cache = path.with_name("layer1_decoder.pth")
    if not cache.is_file():
        if measured is not None:
            raise UsageError(f"{cache} is missing, but the Task 3 metrics describe a layer-1 "
                             "decoder fitted for this checkpoint; rerun visualize_latents.py")
        return None
    try:
        cached = load_torch_file(cache, "layer-1 decoder cache")
    except UsageError:
        if measured is not None:
            raise
        return None
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    key = cached.get("key") if isinstance(cached, dict) else None
    if not isinstance(key, dict) or key.get("checkpoint_sha256") != sha:
        if measured is not None:
            raise UsageError(f"the layer-1 decoder cached in {cache} was not fitted for "
                             f"{path}; rerun visualize_latents.py on it")
        return None
    if measured is not None:
        differ = [k for k in REFIT_KEYS if key.get(k) != measured.get(k)]
        if differ:
            raise UsageError(f"the layer-1 decoder cached in {cache} is not the one the Task 3 "
                             f"metrics measured (its {', '.join(differ)} differ); rerun "
                             "visualize_latents.py, then build the page")
    if "data_sha256" in key and key["data_sha256"] != data_sha256:
        raise UsageError(f"the layer-1 decoder cached in {cache} was fitted on other data than "
                         "the data loaded here (another --data-dir, --subset or --seed); pass "
                         "the data it was fitted on, or rerun visualize_latents.py")
    decoder = torch.nn.ConvTranspose2d(net.deconv1.in_channels, net.deconv1.out_channels,
                                       net.deconv1.kernel_size)
    try:
        decoder.load_state_dict(cached["state"])
    except (KeyError, TypeError, RuntimeError):
        raise UsageError(f"the layer-1 decoder cached in {cache} does not fit this model; "
                         "rerun visualize_latents.py") from None
    if not all(bool(v.isfinite().all()) for v in decoder.state_dict().values()):
        raise UsageError(f"the layer-1 decoder cached in {cache} holds NaN or infinite weights "
                         "(the checkpoint itself is fine); delete the cache and rerun "
                         "visualize_latents.py, which fits it again")
    return decoder


TASK3_FIX = "rerun visualize_latents.py"


def check_page_path(out: Path, data_dir: str | Path | None) -> None:
    """--out as every script's output is checked: its folder writable and outside the data
    folder; an existing file there only if it is a page this script wrote (so that a checkpoint
    or a metrics file is never replaced by the page)."""
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out} does not end in .html; the explorer is an HTML page "
                         "(e.g. --out outputs/task3/explorer.html)")
    check_output_dir(out.parent, data_dir=data_dir)
    if out.is_symlink() or out.exists():
        if out.is_symlink() or not out.is_file():
            raise UsageError(f"--out {out} is a link or not a regular file; remove it or pass "
                             "another --out")
        try:
            with open(out, "rb") as page:
                head = page.read(MAX_BYTES + 2 ** 20)
        except OSError as error:
            raise UsageError(f"--out {out} cannot be read ({error.strerror}); pass another "
                             "--out") from None
        if PAGE_MARK.encode() not in head:
            raise UsageError(f"--out {out} exists and is not an explorer page; it is not "
                             "replaced: pass another --out (or remove it)")


def parse_args(argv: list[str] | None = None):
    parser = ArgumentParser(description="The channel explorer page from Task 2 checkpoint(s).")
    parser.add_argument("checkpoints", nargs="*", type=Path, metavar="CHECKPOINT",
                        help="deconv_net.pth files; the first is the default model (float32), "
                             "the others are embedded (fully connected layers float16) to compare with")
    parser.add_argument("--study", type=Path, default=None, metavar="OUTPUTS",
                        help="the study's page (make explorer): the trained model, Task 3's cards "
                             "and randomised models and the λ sweep's models found in OUTPUTS, "
                             "written to OUTPUTS/task3/explorer.html")
    parser.add_argument("--out", type=Path, default=None, help="the page to write (.html)")
    parser.add_argument("--task3", type=Path, default=None,
                        help="Task 3 metrics.json of the first checkpoint: adds the channel cards "
                             "(and uses its --data-dir/--subset unless given)")
    add_data_arguments(parser)
    parser.set_defaults(subset=None)
    args = parser.parse_args(argv)
    if args.study is not None:
        if args.checkpoints or args.task3:
            parser.error("--study finds the checkpoints and Task 3's metrics itself; give either "
                         "--study or CHECKPOINT ... (with --task3)")
        tree = Outputs(args.study)
        if not tree.task2_checkpoint.is_file():
            raise UsageError(f"no Task 2 model in {tree.task('task2')}; run make runs first")
        args.checkpoints = tree.explorer_checkpoints()
        task3 = tree.task("task3") / METRICS
        args.task3 = task3 if task3.is_file() else None
        args.out = args.out or tree.explorer
    elif not args.checkpoints or args.out is None:
        parser.error("give CHECKPOINT ... and --out, or --study OUTPUTS")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.task3 is not None:  # an interrupted Task 3 leaves older cards and models there
        require_complete(args.task3.parent, "the Task 3 folder",
                         "rerun visualize_latents.py into it, or leave --task3 out")
    task3 = read_task3(args.task3, TASK3_FIX) if args.task3 else None
    if task3 is not None and task3.architecture != architecture_beside(args.checkpoints[0]):
        raise UsageError(f"{args.task3} describes a network of another architecture than "
                         f"{args.checkpoints[0]}; pass the checkpoint Task 3 read first")
    for path in args.checkpoints:
        folders = [path.parent]
        if path.parent.parent.name == BASELINE_MODELS:  # saved by Task 3 into its folder
            folders.append(path.parent.parent.parent)
        for folder in folders:
            require_complete(folder, "the folder of checkpoint", f"rerun the run that writes "
                             f"it, or leave {path} out")
    config = task3.config if task3 else {}
    data_dir = args.data_dir or require(config.get("data_dir"), (str, type(None)), 1, 4096,
                                        f"{args.task3}: config: data_dir", TASK3_FIX)
    check_page_path(args.out, data_dir)
    if args.subset is None and task3 is not None:
        subset = field(config, "subset", float, 0, 1, f"{args.task3}: config", TASK3_FIX)
        seed = field(config, "seed", int, 0, None, f"{args.task3}: config", TASK3_FIX)
    else:
        subset, seed = args.subset or 1.0, args.seed
    data = load_cifar10(data_dir, subset=subset, seed=seed, quiet=args.quiet)
    measured = None
    if task3 is not None:
        expected = field(task3.data, "content_sha256", str, 64, 64, f"{args.task3}: data",
                         TASK3_FIX)
        if expected != data.content_hash or task3.rule_images["of"] != len(data.test_labels):
            raise UsageError(f"the data loaded here (after --subset and its seed) is not the "
                             f"data {args.task3} was computed on (its top-9 patches index that "
                             "one); pass its --data-dir, --subset and --seed, or leave them out")
        measured = task3.layer1_refit
        first_sha = hashlib.sha256(args.checkpoints[0].read_bytes()).hexdigest()
        if measured.get("checkpoint_sha256") != first_sha:
            raise UsageError(f"{args.task3} describes another checkpoint than "
                             f"{args.checkpoints[0]}: its channel cards would not be this "
                             "model's; pass the checkpoint Task 3 read first (or leave --task3 "
                             "out)")
    models, seen = [], set()
    for k, path in enumerate(args.checkpoints):
        net = load_model(path, "DeconvNet", "checkpoint").eval()
        if net.arch.batchnorm:  # the page runs plain convolutions: fold each BatchNorm into its
            net = fold_batchnorm(net).eval()  # conv (the same logits in eval mode), never drop it
            say(f"note: {path} has BatchNorm layers; the page runs them folded into their "
                "convolutions (the same network in eval mode)")
        if models and net.arch != models[0]["net"].arch:  # the page runs one architecture
            raise UsageError(f"{path} is a network of another architecture than "
                             f"{args.checkpoints[0]}; a page compares models of one architecture: "
                             "build a page for each")
        ident, label, meta = _describe_checkpoint(path)
        base, n = ident, 1
        while ident in seen or ident == DEFAULT_ID:  # a duplicate: numbered, within the limit
            suffix = f"_{n}"
            ident, n = base[:ID_LENGTH - len(suffix)] + suffix, n + 1
        seen.add(ident)
        models.append({"id": ident, "label": label, "net": net, **meta,
                       "layer1_decoder": _layer1_decoder(path, net, data.content_hash,
                                                         measured if k == 0 else None)})
    first = models[0]
    images = task3.images if task3 else {}
    test_index = 0
    if "test" in images:
        test_index = field(field(images, "test", dict, what=f"{args.task3}: images",
                                 fix=TASK3_FIX), "index", int, 0, len(data.test_labels) - 1,
                           f"{args.task3}: images: test", TASK3_FIX)
    report = {"test": {"index": test_index}}
    if "train" in images:
        i = field(field(images, "train", dict, what=f"{args.task3}: images", fix=TASK3_FIX),
                  "index", int, 0, len(data.train_labels) - 1, f"{args.task3}: images: train",
                  TASK3_FIX)
        report["train"] = {"index": i, "label": int(data.train_labels[i]),
                           "pixels": data.train_images[i]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = write_explorer(args.out, PageContent(
            first["net"], first["layer1_decoder"], data.test_images, data.test_labels, report,
            task3, extra_models=tuple(models[1:]), model_label=first["label"],
            model_info={"lambda": first.get("lambda")}))
    except ValueError as error:  # over MAX_BYTES, or a weight float16 cannot hold
        raise UsageError(str(error)) from None
    print(f"wrote {args.out} ({size / 2 ** 20:.2f} MB, {plural(len(models), 'model')}, "
          f"{'with' if task3 else 'without'} channel cards)")


if __name__ == "__main__":
    run_cli(main)
