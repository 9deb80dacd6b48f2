#!/usr/bin/env bash
# Test fixtures of composeops.platform: stand-in application images and a local image registry.
#
#   fixtures.sh [up]   build the images (cached by recipe hash), start the registry, push the images
#   fixtures.sh env    print where scenarios find the fixtures (after `up`)
#   fixtures.sh down   remove the registry container (its data volume and the images stay)
#   fixtures.sh purge  remove the registry container, its data volume and every fixture image
#
# Idempotent: a second `up` rebuilds nothing and pushes nothing when no recipe changed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FIXTURES=$ROOT/tests/fixtures
# Test CA, registry certificate/key, registry password: made once and kept outside the checkout,
# so every checkout on this machine shares one registry identity. Never committed.
STATE=${COMPOSEOPS_FIXTURES_STATE:-$HOME/.cache/composeops/fixtures}
NETWORK=${COMPOSEOPS_TEST_NETWORK:-composeops-test}
PREFIX=composeops/fixture
REGISTRY_NAME=composeops-registry
REGISTRY_PORT=5000
# The registry is also published on the loopback, where this machine's dockerd pushes to it.
REGISTRY_LOCAL=127.0.0.1:${COMPOSEOPS_REGISTRY_LOCAL_PORT:-15000}
REGISTRY_USER=composeops
REGISTRY_VOLUME=composeops-registry-data
LABEL=org.composeops.recipe
# Bump when the recipe changes in a way the hashes cannot see.
RECIPE_VERSION=1

# name:tag  directory  build-args  [base]   (the images the registry serves, as fixtures/<name>:<tag>;
# base: the fixture image, built first and not pushed, they derive from instead of the Debian base)
IMAGES=(
  "postgres:17 postgres PG_MAJOR=17"
  "redis:8 redis -"
  "app:1.0 app APP_VERSION=1.0"
  "app:2.0 app APP_VERSION=2.0"
  "app:3.0 app APP_VERSION=3.0"
  "app:broken app APP_VERSION=broken,APP_BROKEN=1"
  "frontend:1.0 frontend APP_VERSION=1.0"
  "api:1.0 api APP_VERSION=1.0"
  "api:2.0 api APP_VERSION=2.0"
  "pgbouncer:1.24 pgbouncer -"
  "prometheus:2.53 monitoring/prometheus - monitoring:debian13"
  "alertmanager:0.28 monitoring/alertmanager - monitoring:debian13"
  "node-exporter:1.9 monitoring/node-exporter - monitoring:debian13"
  "postgres-exporter:0.17 monitoring/postgres-exporter - monitoring:debian13"
  "redis-exporter:1.69 monitoring/redis-exporter - monitoring:debian13"
  "blackbox-exporter:0.26 monitoring/blackbox-exporter - monitoring:debian13"
  "nginx-exporter:1.4 monitoring/nginx-exporter - monitoring:debian13"
  "mtail:3.0 monitoring/mtail - monitoring:debian13"
)

log() { printf '[fixtures] %s\n' "$*" >&2; }
die() { printf '[fixtures] ERROR: %s\n' "$*" >&2; exit 1; }

label_of() { docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

# --- Base image: a slim Debian 13 without systemd (app containers run one process), built by the
# test host harness from the same debootstrap recipe as the test hosts.
BASE_IMAGE=
base_image() { BASE_IMAGE=$("$ROOT/tests/harness/testhost.sh" base debian13); }

# build_image TAG DIR ARGS [BASE]: build $PREFIX-TAG from tests/fixtures/DIR unless its recipe is
# current. BASE, a fixture image's TAG, is its base image (build-arg BASE) instead of the Debian base;
# its image id enters the recipe hash, so a rebuilt BASE rebuilds the image.
build_image() {
  local tag=$1 dir=$2 args=$3 base=$BASE_IMAGE image hash base_id build_args=()
  [ -z "${4:-}" ] || base=$PREFIX-$4
  image=$PREFIX-$tag
  base_id=$(docker image inspect -f '{{ .Id }}' "$base")
  hash=$({ echo "$RECIPE_VERSION $args $base_id"; (cd "$FIXTURES/$dir" && find . -type f -print0 | sort -z |
    xargs -0 sha256sum); } | sha256sum | cut -c1-16)
  if [ "$(label_of "$image")" = "$hash" ]; then
    log "$image is current (recipe $hash)"
    return 0
  fi
  if [ "$args" != - ]; then
    local IFS=,
    for a in $args; do build_args+=(--build-arg "$a"); done
  fi
  log "building $image"
  DOCKER_BUILDKIT=0 docker build -q "${build_args[@]}" --build-arg "BASE=$base" \
    --label "$LABEL=$hash" -t "$image" "$FIXTURES/$dir" >"$STATE/build.log" 2>&1 ||
    { tail -n 30 "$STATE/build.log" >&2; die "docker build of $image failed (log above)"; }
  log "$image built (recipe $hash)"
}

# --- Registry identity: test CA, server certificate, password, htpasswd -----------------------
make_identity() {
  mkdir -p "$STATE" && chmod 0700 "$STATE"
  if [ ! -s "$STATE/ca.crt" ] || [ ! -s "$STATE/ca.key" ]; then
    log "creating the test CA in $STATE"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 3650 \
      -subj "/CN=composeops test CA" -keyout "$STATE/ca.key" -out "$STATE/ca.crt" 2>/dev/null
    rm -f "$STATE/server.crt"
  fi
  if [ ! -s "$STATE/server.crt" ] || [ ! -s "$STATE/server.key" ]; then
    log "creating the registry certificate (CN $REGISTRY_NAME)"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=$REGISTRY_NAME" \
      -keyout "$STATE/server.key" -out "$STATE/server.csr" 2>/dev/null
    openssl x509 -req -in "$STATE/server.csr" -CA "$STATE/ca.crt" -CAkey "$STATE/ca.key" -CAcreateserial \
      -days 825 -out "$STATE/server.crt" \
      -extfile <(printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$REGISTRY_NAME") \
      2>/dev/null
    rm -f "$STATE/server.csr"
  fi
  if [ ! -s "$STATE/registry-password" ]; then
    openssl rand -hex 16 >"$STATE/registry-password"
    rm -f "$STATE/htpasswd"
  fi
  chmod 0600 "$STATE"/*.key "$STATE/registry-password"
  if [ ! -s "$STATE/htpasswd" ]; then
    # The registry accepts bcrypt entries only: htpasswd -B from the registry image.
    docker run --rm --entrypoint htpasswd "$PREFIX-registry:debian13" -Bbn "$REGISTRY_USER" \
      "$(cat "$STATE/registry-password")" | sed '/^$/d' >"$STATE/htpasswd"
  fi
}

# --- Registry container -----------------------------------------------------------------------------
start_registry() {
  local hash current
  hash=$({ docker image inspect -f '{{ .Id }}' "$PREFIX-registry:debian13"; cat "$STATE/server.crt" "$STATE/htpasswd";
    echo "$REGISTRY_LOCAL $NETWORK"; } | sha256sum | cut -c1-16)
  current=$(docker container inspect -f "{{ index .Config.Labels \"$LABEL\" }} {{ .State.Running }}" \
    "$REGISTRY_NAME" 2>/dev/null || true)
  if [ "$current" = "$hash true" ]; then
    log "registry $REGISTRY_NAME is running (recipe $hash)"
    return 0
  fi
  # Labelled as the test hosts' playbooks create it (tests/harness/tasks/prepare_network.yml).
  docker network inspect "$NETWORK" >/dev/null 2>&1 ||
    docker network create --label org.composeops.testhost=true "$NETWORK" >/dev/null
  docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  log "starting registry $REGISTRY_NAME ($REGISTRY_NAME:$REGISTRY_PORT on $NETWORK, $REGISTRY_LOCAL here)"
  docker create --name "$REGISTRY_NAME" --hostname "$REGISTRY_NAME" --network "$NETWORK" \
    --restart unless-stopped --label "$LABEL=$hash" -p "$REGISTRY_LOCAL:$REGISTRY_PORT" \
    -v "$REGISTRY_VOLUME:/var/lib/docker-registry" "$PREFIX-registry:debian13" >/dev/null
  # Certificate, key and htpasswd go in as a tar stream owned by the registry's user (uid 998),
  # so the key can stay 0600 and nothing depends on host paths the engine may not see.
  local tmp
  tmp=$(mktemp -d)
  cp "$STATE/server.crt" "$STATE/server.key" "$STATE/htpasswd" "$tmp/"
  tar -C "$tmp" --owner=998 --group=998 --mode=go-rwx -c server.crt server.key htpasswd |
    docker cp - "$REGISTRY_NAME:/etc/docker/registry/auth/"
  rm -rf "$tmp"
  docker start "$REGISTRY_NAME" >/dev/null
  for _ in $(seq 1 30); do
    curl -fsS --cacert "$STATE/ca.crt" -u "$REGISTRY_USER:$(cat "$STATE/registry-password")" \
      "https://$REGISTRY_LOCAL/v2/" >/dev/null 2>&1 && { log "registry answers"; return 0; }
    sleep 1
  done
  docker logs --tail 20 "$REGISTRY_NAME" >&2 || true
  die "registry $REGISTRY_NAME did not answer on https://$REGISTRY_LOCAL/v2/ within 30 s"
}

# push TAG: push $PREFIX-TAG as fixtures/TAG unless the registry already has this very image.
push_image() {
  local tag=$1 name=${1%%:*} ref=${1#*:} local_ref remote want have
  local_ref=$REGISTRY_LOCAL/fixtures/$tag
  docker tag "$PREFIX-$tag" "$local_ref"
  want=$(docker image inspect -f '{{ range .RepoDigests }}{{ println . }}{{ end }}' "$local_ref" |
    sed -n "s|^$REGISTRY_LOCAL/fixtures/$name@||p" | head -n 1 || true)
  have=$(curl -fsS -o /dev/null -D - --cacert "$STATE/ca.crt" -u "$REGISTRY_USER:$(cat "$STATE/registry-password")" \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "https://$REGISTRY_LOCAL/v2/fixtures/$name/manifests/$ref" 2>/dev/null |
    tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p' || true)
  remote=$REGISTRY_NAME:$REGISTRY_PORT/fixtures/$tag
  # The local image's digest is only known after a push: re-push when the id differs from the last.
  if [ -n "$have" ] && [ "$have" = "$want" ] &&
    [ "$(cat "$STATE/pushed/$name-$ref" 2>/dev/null)" = "$(docker image inspect -f '{{ .Id }}' "$local_ref")" ]; then
    log "$remote is current"
    return 0
  fi
  log "pushing $remote"
  DOCKER_CONFIG=$STATE/docker-config docker push -q "$local_ref" >/dev/null ||
    die "docker push $local_ref failed"
  mkdir -p "$STATE/pushed"
  docker image inspect -f '{{ .Id }}' "$local_ref" >"$STATE/pushed/$name-$ref"
}

write_env() {
  # What scenarios read (molecule: lookup('file', …/fixtures.yml) | from_yaml).
  cat >"$STATE/fixtures.yml" <<EOF
---
# Written by tests/harness/fixtures.sh: how test hosts reach the fixture registry and images.
registry: $REGISTRY_NAME:$REGISTRY_PORT
registry_username: $REGISTRY_USER
registry_password: $(cat "$STATE/registry-password")
registry_ca: $STATE/ca.crt
images:
  postgres: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/postgres:17
  redis: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/redis:8
  app_v1: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/app:1.0
  app_v2: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/app:2.0
  app_v3: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/app:3.0
  app_broken: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/app:broken
  frontend: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/frontend:1.0
  api_v1: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/api:1.0
  api_v2: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/api:2.0
  pgbouncer: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/pgbouncer:1.24
  prometheus: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/prometheus:2.53
  alertmanager: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/alertmanager:0.28
  node_exporter: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/node-exporter:1.9
  postgres_exporter: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/postgres-exporter:0.17
  redis_exporter: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/redis-exporter:1.69
  blackbox_exporter: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/blackbox-exporter:0.26
  nginx_exporter: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/nginx-exporter:1.4
  mtail: $REGISTRY_NAME:$REGISTRY_PORT/fixtures/mtail:3.0
EOF
  chmod 0600 "$STATE/fixtures.yml"
}

up() {
  docker info >/dev/null 2>&1 || die "no Docker engine answers (tests/harness/testhost.sh engine starts one)"
  mkdir -p "$STATE" && chmod 0700 "$STATE"
  base_image
  build_image registry:debian13 registry -
  # Shared layer of the monitoring stand-ins (the base of their IMAGES entries), not pushed.
  build_image monitoring:debian13 monitoring/base -
  local entry tag dir args base
  for entry in "${IMAGES[@]}"; do
    read -r tag dir args base <<<"$entry"
    build_image "$tag" "$dir" "$args" "$base"
  done
  make_identity
  start_registry
  mkdir -p "$STATE/docker-config"
  docker --config "$STATE/docker-config" login -u "$REGISTRY_USER" --password-stdin "$REGISTRY_LOCAL" \
    <"$STATE/registry-password" >/dev/null 2>&1 || die "docker login $REGISTRY_LOCAL failed"
  for entry in "${IMAGES[@]}"; do
    read -r tag _ <<<"$entry"
    push_image "$tag"
  done
  write_env
  log "fixtures ready: registry $REGISTRY_NAME:$REGISTRY_PORT, settings in $STATE/fixtures.yml"
}

cmd=${1:-up}
case "$cmd" in
  up) up ;;
  env) cat "$STATE/fixtures.yml" ;;
  down) docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true; log "registry removed (volume $REGISTRY_VOLUME kept)" ;;
  purge)
    docker rm -f -v "$REGISTRY_NAME" >/dev/null 2>&1 || true
    docker volume rm "$REGISTRY_VOLUME" >/dev/null 2>&1 || true
    mapfile -t images < <(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "^($PREFIX-|$REGISTRY_LOCAL/)" || true)
    [ ${#images[@]} -eq 0 ] || docker rmi -f "${images[@]}" >/dev/null
    log "registry, its volume and ${#images[@]} fixture images removed"
    ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
