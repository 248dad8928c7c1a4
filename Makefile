# Shortcuts; each target is one documented command from the README.
.PHONY: install demo test test-slow test-all docs lint format bench mutation

# What .ci/run installs: TensorFlow on the CPU, the test tools, and the export, OpenVINO,
# Ray and audit extras, so `python3 -m pytest` after it skips no test for want of a package.
install:
	python3 -m pip install -e ".[cpu,dev,export,openvino,ray,audit]"

demo: install
	bash cli/fashion_mnist.sh

test:
	python3 -m pytest

test-slow:
	python3 -m pytest -m slow

test-all: test test-slow

# Rewrite the --help blocks embedded in docs/ from the CLI (tests/test_docs.py checks them).
docs:
	python3 docs/gen_help.py

lint:
	python3 -m ruff check imgkit tests benchmarks docs tools
	python3 -m ruff format --check imgkit tests benchmarks docs tools

format:
	python3 -m ruff format imgkit tests benchmarks docs tools
	python3 -m ruff check --fix imgkit tests benchmarks docs tools

# Mutants of the modules whose arithmetic users trust, against the tests that should
# catch them (docs/mutation.md): all, or some with ONLY="submit metrics".
mutation:
	python3 tools/mutate.py $(ONLY)

bench:
	python3 benchmarks/bench_help.py
	python3 benchmarks/bench_train.py
	python3 benchmarks/bench_fashion_cnn.py
	python3 benchmarks/bench_predict.py
	python3 benchmarks/bench_tta.py
	python3 benchmarks/bench_transfer.py
	python3 benchmarks/bench_predict_memory.py
	python3 benchmarks/bench_vgg16_head.py
	python3 benchmarks/bench_segment.py
	python3 benchmarks/bench_runtime.py   # needs the export extra
	python3 benchmarks/bench_scale.py     # an hour: 300,000 images
	python3 benchmarks/bench_recipes.py   # an hour: recipes on the hard benchmark
	python3 benchmarks/bench_gpu.py || [ $$? -eq 4 ]   # 4: skipped, no GPU
	python3 benchmarks/bench_audit.py     # needs the audit extra
	python3 benchmarks/bench_audit_join.py
	python3 benchmarks/bench_explain.py
	python3 benchmarks/bench_multilabel_more.py   # pseudo-labels, start from a bundle
