# Two commands on a fresh machine: `make all` (the whole study) and `make test`.
# Data: set CIFAR10_DIR to a local copy (e.g. CIFAR10_DIR=../shared/cifar10), else ./data is used
# and CIFAR-10 is downloaded there by torchvision.
#
# Values given on the command line reach the scripts as environment variables, never through
# the shell's parser: paths with spaces, quotes, $ or backticks are passed as they are
# (`$(value ...)` keeps make from expanding a $ in them).
PYTHON ?= python3
SUBSET ?= 1.0
DEVICE ?= auto
# EXECUTOR=slurm: the sweep's runs as Slurm jobs (README, "On a cluster"); PARTITION: theirs.
EXECUTOR ?= local
PARTITION ?=
override CIFAR10_DIR := $(value CIFAR10_DIR)
override SUBSET := $(value SUBSET)
override DEVICE := $(value DEVICE)
override EXECUTOR := $(value EXECUTOR)
override PARTITION := $(value PARTITION)
export CIFAR10_DIR SUBSET DEVICE EXECUTOR PARTITION
COMMON = --subset "$$SUBSET" --device "$$DEVICE"

.PHONY: all install runs seeds invariance formation explorer task1 task2 task3 report beyond sweep depth test test-fast bench submission submission-check clean

# Tasks 1 and 2 (3 seeds each), the lambda sweep and Task 3; then the questions beyond the
# assignment (do seeds agree, when do channels form, what is each layer invariant to), the
# explorer with every model, the companion report and the report (whose abstract points to it).
all: install runs seeds formation invariance explorer beyond report

# pip only when a requirement is missing or too old (tests/check_requirements.py says which).
install:
	$(PYTHON) tests/check_requirements.py requirements.txt || $(PYTHON) -m pip install --quiet -r requirements.txt
	if [ "$$EXECUTOR" = slurm ]; then $(PYTHON) -m pip install --quiet -r requirements-cluster.txt; fi

# Every run of the study as parallel processes (one per CPU core; one at a time on a GPU), or
# with EXECUTOR=slurm as Slurm jobs; Task 3 starts as soon as seed 0's Task 2 model exists.
# Seed 0's Task 2 keeps its weights at 0, 1/8, 1/4, 1/2, 1 and 2 epochs (make formation reads
# them; the training is the same). The report is then made here, locally.
runs:
	$(PYTHON) sweep.py $(COMMON) --task3 --snapshots 0.125,0.25,0.5,1,2 --executor "$$EXECUTOR" $${PARTITION:+--partition "$$PARTITION"}

# The explorer page, built once the runs it shows exist: the trained model with Task 3's channel
# cards, the randomised models Task 3 saved, and the lambda-sweep models.
explorer:
	$(PYTHON) build_explorer.py --study outputs --quiet

# Do the seeds learn the same channels? Task 2's seeds matched channel by channel, against
# pairs of random networks (compare_seeds.py; about a minute).
seeds:
	$(PYTHON) compare_seeds.py $(COMMON) --quiet

# When do channels form? Seed 0's Task 2 snapshots (kept by make runs) against the finished
# network and the other seeds' (formation.py; about a minute).
formation:
	$(PYTHON) formation.py $(COMMON) --quiet

# What does each layer become invariant to? (invariance.py, Z&F Fig. 5; about 3 minutes)
invariance:
	$(PYTHON) invariance.py $(COMMON) --quiet

# One run each, seed 0, as the tutorial does it.
task1:
	$(PYTHON) train_classifier.py $(COMMON)

task2:
	$(PYTHON) train_deconv.py $(COMMON)

task3:
	$(PYTHON) visualize_latents.py $(COMMON)
	$(MAKE) explorer

report:
	$(PYTHON) make_report.py

# The companion report outputs/beyond.pdf: the questions beyond the assignment, and the deeper
# network's layer tests once make depth has run.
beyond:
	$(PYTHON) make_beyond_report.py

# The lambda sweep alone (seed 0 only).
sweep:
	$(PYTHON) sweep.py $(COMMON) --seeds 0

# The same study on a deeper network (docs/depth.md): depth.py's plan (python depth.py --help
# shows its protocol and defaults). DEPTH_ARCH, DEPTH_EPOCHS, DEPTH_NULL_DRAWS and DEPTH_THREADS
# override them; every value is checked before anything is trained.
DEPTH_ARCH ?=
DEPTH_EPOCHS ?=
DEPTH_NULL_DRAWS ?=
DEPTH_THREADS ?=
override DEPTH_ARCH := $(value DEPTH_ARCH)
override DEPTH_EPOCHS := $(value DEPTH_EPOCHS)
override DEPTH_NULL_DRAWS := $(value DEPTH_NULL_DRAWS)
override DEPTH_THREADS := $(value DEPTH_THREADS)
export DEPTH_ARCH DEPTH_EPOCHS DEPTH_NULL_DRAWS DEPTH_THREADS
depth: install
	$(PYTHON) depth.py $(COMMON) --executor "$$EXECUTOR" $${PARTITION:+--partition "$$PARTITION"} \
	    $${DEPTH_ARCH:+--arch "$$DEPTH_ARCH"} $${DEPTH_EPOCHS:+--epochs "$$DEPTH_EPOCHS"} \
	    $${DEPTH_NULL_DRAWS:+--null-draws "$$DEPTH_NULL_DRAWS"} $${DEPTH_THREADS:+--threads "$$DEPTH_THREADS"}

# Every test (what CI runs; about 10 minutes on a 2-core CPU with the real-data tests), and the fast tier for the
# edit-test loop (no process started, nothing trained: under a minute).
test: install
	$(PYTHON) -m pytest -q -n auto --dist loadgroup --durations=15 tests

test-fast:
	$(PYTHON) -m pytest -q -m "not slow" tests

bench:
	$(PYTHON) -m benchmarks.bench_task1
	$(PYTHON) -m benchmarks.bench_task2
	$(PYTHON) -m benchmarks.bench_parallel

# report.pdf and code.zip (tracked files only: no data, outputs or checkpoints). code.zip is the
# committed code (HEAD), so uncommitted or untracked changes are refused first: what is shipped
# is the code that made the report. Both files are written to temporary names and renamed only
# when both are whole, so a failure leaves an earlier submission as it was.
submission: submission-check report
	@set -e; mkdir -p submission; \
	trap 'rm -f submission/.report.pdf.tmp submission/.code.zip.tmp' EXIT; \
	cp outputs/report.pdf submission/.report.pdf.tmp; \
	git archive --format=zip --output=submission/.code.zip.tmp HEAD; \
	mv -f submission/.report.pdf.tmp submission/report.pdf; \
	mv -f submission/.code.zip.tmp submission/code.zip; \
	echo "wrote submission/report.pdf and submission/code.zip (commit $$(git rev-parse --short HEAD))"

submission-check:
	@git rev-parse --verify -q HEAD >/dev/null 2>&1 || { \
	    echo "error: make submission packs the code with git archive, but this is not a git repository with a commit; nothing was written" >&2; exit 2; }
	@changed=$$(git status --porcelain | head -n 3 | cut -c4- | tr '\n' ' '); \
	if [ -n "$$changed" ]; then \
	    echo "error: uncommitted changes ($$changed...): code.zip would not be the code that made the report; commit them (or stash them and remake the report), then run make submission again; nothing was written" >&2; exit 2; fi

clean:
	rm -rf outputs submission
