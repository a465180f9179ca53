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

.PHONY: all install runs explorer task1 task2 task3 report sweep depth depth-settings test test-fast bench submission submission-check clean

# Tasks 1 and 2 (3 seeds each), the lambda sweep and Task 3, then the explorer with every model
# and the report.
all: install runs explorer report

# pip only when a requirement is missing or too old (tests/check_requirements.py says which).
install:
	$(PYTHON) tests/check_requirements.py requirements.txt || $(PYTHON) -m pip install --quiet -r requirements.txt
	if [ "$$EXECUTOR" = slurm ]; then $(PYTHON) -m pip install --quiet -r requirements-cluster.txt; fi

# Every run of the study as parallel processes (one per CPU core; one at a time on a GPU), or
# with EXECUTOR=slurm as Slurm jobs; Task 3 starts as soon as seed 0's Task 2 model exists.
# The report is then made here, locally.
runs:
	$(PYTHON) sweep.py $(COMMON) --task3 --executor "$$EXECUTOR" $${PARTITION:+--partition "$$PARTITION"}

# The explorer page, built once the runs it shows exist: the trained model with Task 3's channel
# cards, the randomised models Task 3 saved, and the lambda-sweep models.
explorer:
	$(PYTHON) build_explorer.py --study outputs --quiet

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

# The lambda sweep alone (seed 0 only).
sweep:
	$(PYTHON) sweep.py $(COMMON) --seeds 0

# The same study on a deeper network (docs/depth.md), after `make all` (whose Task 2 models the
# tutorial's probes read): Task 1, Task 2 and its permuted-labels twin with the fast recipe
# (one seed, DEPTH_EPOCHS epochs, one thread per run, two runs at once) while the tutorial's
# net is probed beside them, Task 3 per layer with DEPTH_NULL_DRAWS draws per null and beside it
# the deep net's linear probes (their raw-pixel floor read from the tutorial's probes), the deep
# model's explorer page (outputs/depth/explorer.html, no channel cards), then depth.pdf. The
# probes run on one thread at the lowest priority (nice 19): they take the CPU time the sweep
# and Task 3 leave idle and slow neither much.
DEPTH_ARCH ?= deep4
DEPTH_EPOCHS ?= 6
DEPTH_NULL_DRAWS ?= 99
DEPTH_THREADS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)))")
override DEPTH_ARCH := $(value DEPTH_ARCH)
override DEPTH_EPOCHS := $(value DEPTH_EPOCHS)
override DEPTH_NULL_DRAWS := $(value DEPTH_NULL_DRAWS)
export DEPTH_ARCH DEPTH_EPOCHS DEPTH_NULL_DRAWS DEPTH_THREADS
DEPTH = outputs/depth
depth: install depth-settings outputs/task2/deconv_net.pth
	@mkdir -p $(DEPTH)
	nice -n 19 $(PYTHON) probe_layers.py $(COMMON) --checkpoint outputs/task2/deconv_net.pth \
	    $$(test -f outputs/runs/task2_permuted_seed0/deconv_net.pth && echo --permuted-checkpoint outputs/runs/task2_permuted_seed0/deconv_net.pth) \
	    --threads 1 --quiet --out $(DEPTH)/probes_tutorial & probes=$$!; \
	trap 'kill $$probes 2>/dev/null; exit 130' INT TERM; \
	$(PYTHON) sweep.py $(COMMON) --seeds 0 --no-lambda-sweep --permuted --outputs $(DEPTH) \
	    --executor "$$EXECUTOR" $${PARTITION:+--partition "$$PARTITION"} \
	    -- --arch "$$DEPTH_ARCH" --recipe fast --epochs "$$DEPTH_EPOCHS" --threads 1; \
	trained=$$?; wait $$probes && test $$trained = 0
	nice -n 19 $(PYTHON) probe_layers.py $(COMMON) --checkpoint $(DEPTH)/task2/deconv_net.pth \
	    --permuted-checkpoint $(DEPTH)/runs/task2_permuted_seed0/deconv_net.pth \
	    --pixels-from $(DEPTH)/probes_tutorial --threads 1 --quiet --out $(DEPTH)/probes & probes=$$!; \
	trap 'kill $$probes 2>/dev/null; exit 130' INT TERM; \
	$(PYTHON) visualize_latents.py $(COMMON) --checkpoint $(DEPTH)/task2/deconv_net.pth \
	    --permuted-checkpoint $(DEPTH)/runs/task2_permuted_seed0/deconv_net.pth \
	    --null-draws "$$DEPTH_NULL_DRAWS" --baseline-seeds 1 --occlusion-images 50 \
	    --threads "$$DEPTH_THREADS" --out $(DEPTH)/task3; \
	analysed=$$?; wait $$probes && test $$analysed = 0
	$(PYTHON) build_explorer.py $(DEPTH)/task2/deconv_net.pth --out $(DEPTH)/explorer.html --quiet
	$(PYTHON) make_depth_report.py
	$(PYTHON) make_report.py  # its abstract now points to depth.pdf

# make depth's variables, checked by the scripts' own parsers before anything is trained (a bad
# DEPTH_NULL_DRAWS used to stop Task 3 only after 15 minutes of training).
depth-settings:
	$(PYTHON) train_classifier.py --arch "$$DEPTH_ARCH" --epochs "$$DEPTH_EPOCHS" --help >/dev/null
	$(PYTHON) visualize_latents.py --null-draws "$$DEPTH_NULL_DRAWS" --threads "$$DEPTH_THREADS" --help >/dev/null

# The tutorial's models the depth study compares with: made by make all's runs when missing.
outputs/task2/deconv_net.pth:
	$(MAKE) runs

# Every test (what CI runs; about 11 minutes on a 2-core CPU with the real-data tests), and the fast tier for the
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
