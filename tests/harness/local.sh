#!/usr/bin/env bash
# `make local`: the main job against the embedded default, a local systemd container host.
#
#   local.sh        set up the toolchain, start the host `composeops-local`, run playbooks/site.yml
#   local.sh down   remove the host
#
# Extra arguments after `--` go to ansible-playbook (e.g. `tests/harness/local.sh -- --check --diff`).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib.sh
. tests/lib.sh

if [ "${1:-}" = down ]; then
  docker rm -f -v composeops-local >/dev/null 2>&1 || true
  echo "composeops-local removed"
  exit 0
fi
[ "${1:-}" = -- ] && shift

setup_venv
link_collection
# The key of the local host's admin user (inventories/local), made once.
[ -f .cache/local/id_ed25519 ] || { mkdir -p .cache/local && ssh-keygen -q -t ed25519 -N '' -C composeops-local-admin -f .cache/local/id_ed25519; }
tests/harness/testhost.sh engine
tests/harness/testhost.sh images debian13
ansible-playbook tests/harness/local_host.yml
# The demo stack's images come from the local fixture registry (no registry outside is reachable).
tests/harness/fixtures.sh up
# Test scaffolding a container host needs: Docker inside it, trust in the fixture registry's CA.
ansible-playbook -i inventories/local tests/harness/playbooks/prepare_dind.yml \
  tests/harness/playbooks/trust_fixture_registry.yml
ansible-playbook -i inventories/local playbooks/site.yml "$@"
