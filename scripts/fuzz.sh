#!/usr/bin/env bash
# Fuzzing (issue 10, item 3): at least RUNS (default 1,000,000) executions per target.
#
#   scripts/fuzz.sh              # all four targets
#   scripts/fuzz.sh wire_messages replay_snapshot     # only the libFuzzer ones
#   RUNS=100000 scripts/fuzz.sh config checkpoint     # only the proptest ones, fewer cases
#
# libFuzzer targets (cargo-fuzz, coverage-guided, with AddressSanitizer), in fuzz/:
#   wire_messages    every permakey.v1 message decoded, validated, and applied to a replay table
#   replay_snapshot  replay snapshot loading with the header fixed up to reach the payload decoder
# proptest targets (their crates link libtorch/ALE, which libFuzzer builds do not fit):
#   config           hostile values for every config key, random TOML files
#   checkpoint       damaged keypoint/trainer checkpoints (tensors with recomputed CRC, JSON edits)
# cargo-fuzz needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
# The workspace tests (`make test`) run the same entry points briefly (2000/300/1000 cases).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_messages replay_snapshot config checkpoint)
if ! command -v cargo-fuzz >/dev/null; then
  case " ${targets[*]} " in *" wire_messages "*|*" replay_snapshot "*) cargo install cargo-fuzz --locked ;; esac
fi
for target in "${targets[@]}"; do
  start=$SECONDS
  case $target in
    wire_messages|replay_snapshot)
      mkdir -p "fuzz/corpus/$target"
      (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" -- -runs="$RUNS" -rss_limit_mb=2048 -max_len=65536 2>&1 | tail -n 3) ;;
    config)
      PKRL_FUZZ_CASES=$RUNS cargo test --release -p pkrl-config --test fuzz_config -- --test-threads 2 ;;
    checkpoint)
      PKRL_FUZZ_CASES=$RUNS cargo test --release -p permakey --test fuzz_checkpoint -- --test-threads 1 ;;
    *) echo "fuzz: unknown target '$target' (wire_messages, replay_snapshot, config, checkpoint)" >&2; exit 2 ;;
  esac
  echo "fuzz: $target: $RUNS executions in $((SECONDS - start)) s"
done
