#!/usr/bin/env bash
# Benchmark of the test host harness: image build (cached), time from `docker run` to a booted
# systemd, and the memory an idle test host takes. Prints figures; asserts nothing.
#
#   benchmarks/testhost.sh [ROUNDS]   (default 5 boots per distribution)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
# The run options of tests/harness/testhost.yml, the one definition of a test host.
mapfile -t opts < <(.venv/bin/python - <<'EOF'
import yaml
t = yaml.safe_load(open("tests/harness/testhost.yml"))
for flag, key in (("--cap-add", "testhost_capabilities"), ("--security-opt", "testhost_security_opts"),
                  ("-v", "testhost_volumes"), ("--tmpfs", "testhost_tmpfs")):
    for value in t[key]:
        print(flag); print(value)
print("--cgroupns"); print(t["testhost_cgroupns_mode"])
EOF
)

ms() { date +%s%3N; }

start=$(ms)
built=$(tests/harness/testhost.sh images 2>&1 | grep -c ' built (recipe' || true)
# Label what was measured: a recipe change makes this a build, not the cached check.
if [ "$built" = 0 ]; then what="cached check, both distributions"; else what="build of $built image(s), recipe changed"; fi
echo "images ($what): $(($(ms) - start)) ms"

for distro in debian12 debian13; do
  total=0 worst=0
  for i in $(seq 1 "$rounds"); do
    name="bench-testhost-$distro-$i"
    start=$(ms)
    docker run -d --name "$name" "${opts[@]}" "composeops/testhost:$distro" /sbin/init >/dev/null
    # Bounded: at most 60 s per boot.
    for _ in $(seq 1 600); do
      state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running|degraded) break ;; esac
      sleep 0.1
    done
    took=$(($(ms) - start))
    total=$((total + took)); [ "$took" -gt "$worst" ] && worst=$took
    # docker stats reads 0 here (systemd inside re-parents its cgroups), so sum the processes' RSS.
    [ "$i" = "$rounds" ] && mem=$(docker exec "$name" ps -eo rss= | awk '{s += $1} END {printf "%.1f MiB", s / 1024}')
    docker rm -f -v "$name" >/dev/null
  done
  echo "$distro: boot to '$state' mean $((total / rounds)) ms, worst $worst ms over $rounds boots; idle memory $mem"
done
