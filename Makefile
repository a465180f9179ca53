# Two commands on a fresh machine: `make all` (the whole study) and `make test`.
# Data: set CIFAR10_DIR to a local copy (e.g. CIFAR10_DIR=../shared/cifar10), else ./data is used
# and CIFAR-10 is downloaded there by torchvision.
PYTHON ?= python3
SUBSET ?= 1.0
DATA_ARGS := $(if $(CIFAR10_DIR),--data-dir $(CIFAR10_DIR),)
COMMON := $(DATA_ARGS) --subset $(SUBSET)

.PHONY: all install task1 task2 task3 report sweep test bench submission clean

all: install task1 task2 task3 report

install:
	$(PYTHON) -m pip install --quiet -r requirements.txt

task1:
	$(PYTHON) train_classifier.py $(COMMON)

task2:
	$(PYTHON) train_deconv.py $(COMMON)

task3:
	$(PYTHON) visualize_latents.py $(COMMON)

report:
	$(PYTHON) make_report.py

# The lambda sweep of the README (about 8 minutes on 2 CPU cores); the report picks it up.
sweep:
	$(PYTHON) train_deconv.py $(COMMON) --lambda-sweep 0,1e-4,1e-3,1e-2,1e-1

test: install
	$(PYTHON) -m pytest -q tests

bench:
	$(PYTHON) benchmarks/bench_task1.py $(DATA_ARGS)
	$(PYTHON) benchmarks/bench_task2.py $(DATA_ARGS)

# report.pdf and code.zip (tracked files only: no data, outputs or checkpoints).
submission: report
	mkdir -p submission
	cp outputs/report.pdf submission/report.pdf
	git archive --format=zip --output=submission/code.zip HEAD
	@echo "wrote submission/report.pdf and submission/code.zip"

clean:
	rm -rf outputs submission
