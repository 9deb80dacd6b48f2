# shellcheck shell=bash
# Helpers shared by tests/run and the Makefile targets. Source it from the repository root.

PYTHON=${PYTHON:-python3}
export PYTHON_VERSION
PYTHON_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=${COMPOSEOPS_VENV:-$PWD/.venv}
export COMPOSEOPS_COLLECTIONS_PATH=$PWD/build/collections
export ANSIBLE_COLLECTIONS_PATH=$COMPOSEOPS_COLLECTIONS_PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
# The shipped ansible.cfg caches facts in .cache/facts by host name; test hosts are re-created
# under the same names, so tests, harness and `make local` keep facts in memory only (molecule
# writes its own ansible.cfg and never reads the shipped one). The environment beats the file.
export ANSIBLE_CACHE_PLUGIN=memory
TIMINGS=()

# ensure_venv DIR LOG PIP_ARGS…: create DIR as a virtual environment holding PIP_ARGS, or refresh
# it when PIP_ARGS (and the files they name) changed since the last install.
ensure_venv() {
  local venv=$1 log=$2 stamp want
  shift 2
  stamp="$venv/.requirements.sha256"
  # `-r FILE` alone: the file's hash; anything else: the hash of the arguments.
  if [ $# = 2 ] && [ "$1" = -r ]; then want=$(sha256sum "$2" | cut -d' ' -f1); else want=$(printf '%s\n' "$@" | sha256sum | cut -d' ' -f1); fi
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  echo "[setup] installing the Python toolchain into $venv (its requirements changed or it is new)"
  mkdir -p "$(dirname "$log")"
  if ! { "$PYTHON" -m venv "$venv" &&
    "$venv/bin/pip" install --upgrade pip &&
    "$venv/bin/pip" install "$@"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "[setup] pip install failed (full log: $log)" >&2
    return 1
  fi
  echo "$want" >"$stamp"
}

# The project's toolchain (requirements.txt) in .venv, first on PATH.
setup_venv() {
  ensure_venv "$VENV" build/pip.log -r requirements.txt || return 1
  export PATH="$VENV/bin:$PATH" VIRTUAL_ENV=$VENV
}

# Make this checkout resolvable as composeops.platform without building it.
link_collection() {
  mkdir -p "$COMPOSEOPS_COLLECTIONS_PATH/ansible_collections/composeops"
  ln -sfn "$PWD" "$COMPOSEOPS_COLLECTIONS_PATH/ansible_collections/composeops/platform"
}

# timed NAME CMD…: run CMD, remember how long it took.
timed() {
  local name=$1 start rc
  shift
  start=$(date +%s)
  echo "::: $name"
  "$@"
  rc=$?
  TIMINGS+=("$(printf '%-24s %5ss  %s' "$name" "$(($(date +%s) - start))" "$([ $rc = 0 ] && echo ok || echo FAILED)")")
  return $rc
}

print_timings() {
  echo "::: timings"
  printf '  %s\n' "${TIMINGS[@]}"
}

# The built collection must carry the product and nothing of the test and dev material.
check_tarball_content() {
  local listing bad
  listing=$(tar -tzf "$1") || return 1
  grep -q '^roles/common/tasks/main.yml$' <<<"$listing" || { echo "tarball lacks roles/common" >&2; return 1; }
  bad=$(grep -E '^(molecule|tests|inventories|benchmarks|\.ci|\.config|\.venv|build)/' <<<"$listing")
  [ -z "$bad" ] || { printf 'tarball carries test/dev files:\n%s\n' "$bad" >&2; return 1; }
}
