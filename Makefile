# Shortcuts; each target is one documented command from the README.
.PHONY: install demo test test-all lint format bench mutation

install:
	python3 -m pip install -e ".[cpu,dev]"

demo: install
	bash cli/fashion_mnist.sh

test:
	python3 -m pytest

test-all:
	python3 -m pytest -m "slow or not slow"

lint:
	python3 -m ruff check imgkit tests benchmarks tools
	python3 -m ruff format --check imgkit tests benchmarks tools

format:
	python3 -m ruff format imgkit tests benchmarks tools
	python3 -m ruff check --fix imgkit tests benchmarks tools

# Mutants of the modules whose arithmetic users trust, against the tests that should
# catch them (docs/mutation.md): all, or some with ONLY="submit metrics".
mutation:
	python3 tools/mutate.py $(ONLY)

bench:
	python3 benchmarks/bench_help.py
	python3 benchmarks/bench_train.py
	python3 benchmarks/bench_predict.py
	python3 benchmarks/bench_tta.py
	python3 benchmarks/bench_transfer.py
	python3 benchmarks/bench_predict_memory.py
	python3 benchmarks/bench_vgg16_head.py
	python3 benchmarks/bench_segment.py
	python3 benchmarks/bench_runtime.py   # needs the export extra
	python3 benchmarks/bench_scale.py     # an hour: 300,000 images
	python3 benchmarks/bench_recipes.py   # an hour: recipes on the hard benchmark
	python3 benchmarks/bench_gpu.py       # small on a CPU
