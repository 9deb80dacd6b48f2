# shellcheck shell=bash
# Helpers shared by tests/run and the Makefile targets. Source it from the repository root.

PYTHON=${PYTHON:-python3}
export PYTHON_VERSION
PYTHON_VERSION=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=${COMPOSEOPS_VENV:-$PWD/.venv}
export COMPOSEOPS_COLLECTIONS_PATH=$PWD/build/collections
export ANSIBLE_COLLECTIONS_PATH=$COMPOSEOPS_COLLECTIONS_PATH
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
TIMINGS=()

# Create or refresh the virtual environment from requirements.txt (skipped when unchanged).
setup_venv() {
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[setup] installing the Python toolchain into $VENV (requirements.txt changed or new)"
    mkdir -p build
    if ! { "$PYTHON" -m venv "$VENV" &&
      "$VENV/bin/pip" install --upgrade pip &&
      "$VENV/bin/pip" install -r requirements.txt; } >build/pip.log 2>&1; then
      tail -n 30 build/pip.log >&2
      echo "[setup] pip install failed (full log: build/pip.log)" >&2
      return 1
    fi
    echo "$want" >"$stamp"
  fi
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
