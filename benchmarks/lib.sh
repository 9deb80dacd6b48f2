# shellcheck shell=bash
# What the benchmarks that start a test host share (sourced from the repository root after
# `set -euo pipefail`): the checkout's venv and collection, the test host image and the fixture
# registry, the host removed now and when the script ends, and `quiet`.
# shellcheck source=tests/lib.sh
. tests/lib.sh
setup_venv
link_collection
tests/harness/testhost.sh engine >/dev/null
tests/harness/testhost.sh images debian13 >/dev/null
tests/harness/fixtures.sh up >/dev/null

# bench_host NAME [OTHER…]: the benchmark's test host ($host; the others too, all in $hosts) and
# its fresh work directory ($work, under build/, named after the first).
bench_host() {
  # shellcheck disable=SC2034  # read by the benchmark that sources this file
  host=$1
  hosts=("$@")
  work=$(pwd)/build/$1
  export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORCE_COLOR=0
  cleanup() { docker rm -f -v "${hosts[@]}" >/dev/null 2>&1 || true; }
  trap cleanup EXIT
  cleanup
  rm -rf "$work" && mkdir -p "$work"
}

# quiet NAME CMD…: a step with its output in $work/NAME.log, shown on failure (which ends the run).
quiet() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 || { tail -n 40 "$work/$name.log" >&2; echo "[bench] $name failed (log: $work/$name.log)" >&2; exit 1; }
}

# seconds NAME CMD…: a quiet step, and the seconds (3 decimals) it took into $work/NAME.s.
seconds() {
  local t0 t1 name=$1
  t0=$(date +%s.%N)
  quiet "$@"
  t1=$(date +%s.%N)
  python3 -c "print(round($t1 - $t0, 3))" >"$work/$name.s"
}
