# Two commands do everything on a fresh machine: `make run` and `make test`.
# Each first runs scripts/setup.sh (idempotent; a second run only checks its stamps).
SHELL := /bin/bash
CARGO ?= cargo
RUN_ARGS ?= --config config/quick.toml
# batch 256 of the full model takes minutes per step on a 2-core CPU; the GPU table uses 1,32,256
KEYPOINT_BENCH_BATCHES ?= 1,32

.PHONY: setup run test bench cuda cuda-setup clean-deps help eval-keypoints cluster images compose-test fuzz keypoints-report results

help:
	@echo "make run    - set up, then run the main job (embedded mode)"
	@echo "make test   - set up, then run every test (Rust workspace + Python parity checks)"
	@echo "make bench  - set up (with the Python baselines), then write the benchmark tables"
	@echo "make cluster - set up, then run the distributed mode as local processes (replay, keypoints, learner, ACTORS actors)"
	@echo "make images - build the container images offline (base image, permakey-rl, prometheus) for docker-compose.yml"
	@echo "make compose-test - images, then the compose stack on the toy world with container kills (deploy/docker/test-compose.sh)"
	@echo "make cuda   - build the CUDA variant against the full PyTorch 2.11.0 (target/cuda)"
	@echo "make eval-keypoints DIR=runs GAME=MsPacman - RAM-grounded keypoint metric for every checkpoint"
	@echo "make keypoints-report - train PermaKey and the Transporter on 4 games, score them, regenerate KEYPOINTS.md"
	@echo "make results - the paper's Atari runs (random policy, main table, noisy Atari, keypoint count), then RESULTS.md (scripts/results-runs.sh; CPU budget by default)"
	@echo "make fuzz   - 1M executions of each fuzz target (scripts/fuzz.sh; RUNS=... to change)"

setup:
	@scripts/setup.sh

run: setup
	$(CARGO) run --release -p permakey-rl -- run $(RUN_ARGS)

test: setup
	$(CARGO) test --workspace --release --no-fail-fast

bench: setup
	@scripts/setup.sh --bench
	$(CARGO) bench -p atari --bench env_throughput
	$(CARGO) bench -p trainer --bench trainer_throughput
	$(CARGO) bench -p trainer --bench feature_cache
	$(CARGO) bench -p trainer --bench parameter_board
	$(CARGO) bench -p learner --bench update_overhead
	$(CARGO) bench -p permakey --bench features
	$(CARGO) bench -p replay-service --bench replay_throughput
	$(CARGO) bench -p keypoint-service --bench keypoint_service
	$(CARGO) bench -p permakey-rl --bench distributed
	$(CARGO) bench -p permakey-rl --bench load
	mkdir -p target/bench
	$(CARGO) run --release -p permakey-rl -- --device auto keypoints bench --batches $(KEYPOINT_BENCH_BATCHES) --seconds 2 | tee target/bench/keypoints.md

# The distributed mode on 127.0.0.1 (scripts/cluster.sh): default the toy world in ~2 minutes;
# for Atari pass a keypoint checkpoint, e.g.
#   make cluster CLUSTER_ARGS="--config config/quick.toml --set keypoints.checkpoint=runs/x/permakey/checkpoints"
CLUSTER_ARGS ?= --config config/cluster-toy.toml
cluster: setup
	$(CARGO) build --release -p permakey-rl --bins
	scripts/cluster.sh $(CLUSTER_ARGS)

# Container images for docker-compose.yml (no registry needed; see README "Containers").
images:
	scripts/docker-build.sh

compose-test: setup
	$(CARGO) build --release -p permakey-rl --bins
	deploy/docker/test-compose.sh --no-cargo

# Scores every checkpoint under DIR (default runs/) on GAME with the RAM-grounded keypoint metric.
DIR ?= runs
GAME ?= MsPacman
eval-keypoints: setup
	$(CARGO) build --release -p permakey-rl
	@found=0; for meta in $$(find $(DIR) -name checkpoint.json | sort); do \
	  ckpt=$$(dirname $$meta); found=1; echo "== $$ckpt"; \
	  target/release/permakey-rl eval-keypoints --checkpoint $$ckpt --game $(GAME) --out $$ckpt/eval || exit 1; \
	done; [ $$found = 1 ] || { echo "no checkpoints under $(DIR)"; exit 1; }

keypoints-report: setup
	$(CARGO) build --release -p permakey-rl
	scripts/keypoints-report.sh

# The paper's Atari experiments (issue 11). Default: config/results-cpu.toml, seed 0, every cell;
# on a GPU: make results RESULTS_ENV="CONFIG=config/example.toml DEVICE=cuda SEEDS='0 1 2'"
RESULTS_ENV ?=
results: setup
	$(CARGO) build --release -p permakey-rl
	env $(RESULTS_ENV) scripts/results-runs.sh

fuzz: setup
	scripts/fuzz.sh

cuda-setup:
	@scripts/setup.sh --cuda

cuda: cuda-setup
	scripts/build-cuda.sh

clean-deps:
	rm -rf .deps .cargo/config.toml
