#!/usr/bin/env bash
# Runs every test: unit tests and the integration suites in integration/, which start
# real VEs (and real podman/containerd where an issue names them). Needs root and
# hack/setup.sh. Runs every suite even after a failure, exits non-zero on any, and ends
# with cargo's summary lines.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
[ -d bundles/busybox/rootfs/bin ] || hack/mkrootfs.sh >/dev/null
# The suites' VEs claim test addresses, bridges and hooks: the host policy in hack/ allows
# them (without a policy vzrun lets a spec ask for none of these).
export VZRUN_POLICY=${VZRUN_POLICY:-$here/hack/policy.toml}
# Integration tests start many VEs; a few at a time keeps a 2-core machine responsive.
threads=${VZRUN_TEST_THREADS:-4}
cargo test --profile ci --locked --no-fail-fast -- --test-threads="$threads" "$@"
