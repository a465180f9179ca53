"""Every value more than one module reads, in one place: the study's default λ, the sweep's seeds
and λ list, the settings that make two runs comparable, and the names of Task 3's decoders and
baseline groups.

Change a value here and the scripts, the sweep, its summary, the report and the explorer follow
(tests/test_settings.py changes the default λ and checks that they do).
"""

# --- Task 2 and the sweep ---

DEFAULT_LAMBDA = 1e-2  # weight of L_rec in eq. (1) for Task 2 and for every seed of the sweep
SWEEP_SEEDS = (0, 1, 2)  # Task 1 and Task 2 (default λ) are trained once per seed
SWEEP_LAMBDAS = tuple(sorted({0.0, 1e-4, 1e-3, DEFAULT_LAMBDA, 1e-1}))  # Task 2, first seed, per value

# A Task 2 run is compared with Task 1 (McNemar, the report's provenance check) only when these
# settings of the two runs agree.
COMPARED_WITH_TASK1 = ("data_sha256", "subset", "seed", "epochs", "batch_size", "lr", "momentum",
                       "arch", "recipe")


def lambda_name(lam: float) -> str:
    """A λ as short as it can be written without meeting another value: 0.01, 1.000001e-04."""
    short = f"{lam:g}"
    return short if float(short) == lam else repr(lam)


# --- upper bounds on the numbers a user types (each flag's --help states its bound) ---
# Past them a run would build lists of a hundred million seeds, compare occlusion on more test
# images than exist, or start more threads than the machine has cores.

MAX_NULL_DRAWS = 99_999  # models per null group of Task 3 (999 take about 4 minutes)
MAX_BASELINE_SEEDS = 20  # re-initialisations per cascade step whose decoders are refitted
MAX_OCCLUSION_IMAGES = 10_000  # CIFAR-10's test split


def usable_cores() -> int:
    """The CPU cores this process may run on: the largest --threads a script accepts."""
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # platforms without affinity
        return os.cpu_count() or 1


# --- Task 3: which decoder reads which latent, and the baselines it is weighed against ---

# Decoder kinds, per layer (identifiers "<layer>_<kind>", e.g. "z1_refit"): "learned" is the
# decoder Task 2 trained on the last layer, "literal" Task 2's decoder applied to a lower layer
# it never saw (it was trained on the outputs of the layer above), "refit" those layers fitted
# again on the real latents with the encoder frozen, "tied" Zeiler & Fergus's deconvnet (the
# encoder's filters transposed, no bias, nothing learned).
DECODER_KINDS = {"learned": "Task 2 decoder", "literal": "Task 2 decoder, literal",
                 "refit": "refitted on the real latents",
                 "tied": "tied (encoder filters transposed)"}

# The groups of models Task 3's findings are weighed against, and their words: study.core.ids.ModelId.
