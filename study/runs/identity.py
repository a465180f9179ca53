""""Same run?" checks between the inputs of one script: a checkpoint passed as a baseline must
be the run it is said to be, trained on the same data as the model it is compared with.
"""
from pathlib import Path

from study.core.common import UsageError
from study.core.layout import METRICS
from study.core.readers import field, read_json, require

PERMUTED_FIX = ("pass the deconv_net.pth of a train_deconv.py --permute-labels run on the same "
                "data and --subset (sweep.py --task3 makes one), or leave --permuted-checkpoint out")


def check_permuted(path: Path, sha256: str, trained_sha256: str, trained_metrics: dict) -> dict:
    """What Task 3 records of its permuted-labels baseline, once it is shown to be one.

    Its folder's metrics.json must say `permute_labels` in its settings, and its data (the
    hash of the data actually used, after --subset with its seed) and --subset must be the
    trained model's (when the trained model's metrics are there to compare). The trained
    checkpoint itself (same hash) is refused.
    Returns {"checkpoint", "checkpoint_sha256", "seed"}.
    """
    if sha256 == trained_sha256:
        raise UsageError(f"--permuted-checkpoint {path} is the trained checkpoint itself (same "
                         f"SHA-256); {PERMUTED_FIX}")
    metrics_path = path.with_name(METRICS)
    if not metrics_path.is_file():
        raise UsageError(f"--permuted-checkpoint {path} has no metrics.json beside it, so "
                         f"nothing shows it was trained on permuted labels; {PERMUTED_FIX}")
    metrics = read_json(metrics_path, "metrics of the permuted-labels model", PERMUTED_FIX)
    config = field(metrics, "config", dict, what=str(metrics_path), fix=PERMUTED_FIX)
    if config.get("permute_labels") is not True:
        raise UsageError(f"--permuted-checkpoint {path} was not trained on permuted labels "
                         f"({metrics_path} has no permute_labels in its settings); "
                         f"{PERMUTED_FIX}")
    trained = trained_metrics.get("config") if isinstance(trained_metrics, dict) else None
    if isinstance(trained, dict):
        for key, kind in (("data_sha256", str), ("subset", float)):
            if key not in trained:
                continue
            ours = field(config, key, kind, what=f"{metrics_path}: config", fix=PERMUTED_FIX)
            if ours != require(trained[key], kind, what=f"the trained model's {key}"):
                raise UsageError(f"--permuted-checkpoint {path} was trained on other data than "
                                 f"the trained model ({key} differs); {PERMUTED_FIX}")
    seed = config.get("seed")
    return {"checkpoint": str(path), "checkpoint_sha256": sha256,
            "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None}
