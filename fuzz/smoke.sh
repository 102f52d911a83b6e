#!/usr/bin/env bash
# CI smoke of every fuzz target: a bounded run of each (FUZZ_SECONDS, default 25 s; all eight
# within about 4 minutes once built), starting from the committed seeds in fuzz/seeds/. Fails
# when any target crashes (a panic, a failed oracle assertion, an input slower than 10 s or a
# process over 2 GB); the crashing input is left in fuzz/artifacts/<target>/.
#
# Installs cargo-fuzz (and the nightly toolchain) when missing. Long runs: fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '== fuzz: %s\n' "$*" >&2; }

seconds="${FUZZ_SECONDS:-25}"
# No sanitizer by default: the hub forbids unsafe code, so ASan mostly slows the run; the
# crashes we look for (panics, overflow checks, oracle failures) need none. FUZZ_SANITIZER
# overrides (address for long runs over the C parts, e.g. SQLite).
sanitizer="${FUZZ_SANITIZER:-none}"
# 16 codegen units: a much faster build on a 2-core CI for slightly slower executions.
# The build lives outside the checkout (FUZZ_TARGET_DIR), so CI runs and later checkouts on
# the same machine reuse the compiled dependencies instead of a cold half-hour build.
target_dir="${FUZZ_TARGET_DIR:-${HOME:-/root}/.cache/aimarket-hub/fuzz-target}"
mkdir -p "$target_dir"
flags=(--sanitizer "$sanitizer" --codegen-units 16 --target-dir "$target_dir")

if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cargo fmt --check
log "building the targets"
cargo +nightly fuzz build "${flags[@]}"

failed=()
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo +nightly fuzz list); do
  # New inputs go to a scratch corpus: the committed seeds stay as they are.
  corpus="$scratch/$target"
  mkdir -p "$corpus"
  log "$target for ${seconds}s"
  if ! cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      2>"$scratch/$target.log"; then
    tail -n 40 "$scratch/$target.log" >&2
    failed+=("$target")
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$scratch/$target.log" | \
      sed "s/^/   $target /" >&2 || true
  fi
done

if ((${#failed[@]})); then
  log "crashed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
log "all targets ran ${seconds}s without a crash"
