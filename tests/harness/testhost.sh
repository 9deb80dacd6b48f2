#!/usr/bin/env bash
# Test host harness for composeops.platform.
#
#   testhost.sh engine            make sure a Docker engine answers (install + start dockerd if not)
#   testhost.sh images [DISTRO…]  build the systemd test host images, cached by recipe hash
#                                 (DISTRO: debian12, debian13; default both)
#   testhost.sh base [DISTRO]     build the slim base of the stand-in application images (no
#                                 systemd; default debian13); prints the image name
#   testhost.sh purge             remove every test host container (label org.composeops.testhost),
#                                 the test network and the test host and base images
#
# The images are the base of every molecule scenario, of the local default host (`make local`) and
# of the stand-in application images. How a test host container is run lives in testhost.yml.
set -euo pipefail

IMAGE_REPO=${COMPOSEOPS_TESTHOST_IMAGE:-composeops/testhost}
BASE_REPO=${COMPOSEOPS_APP_BASE_IMAGE:-composeops/appbase}
LABEL=org.composeops.recipe

log() { printf '[testhost] %s\n' "$*" >&2; }
die() { printf '[testhost] ERROR: %s\n' "$*" >&2; exit 1; }

# Bump when the recipe changes in a way the hash (the recipe functions' text, package lists,
# mirror) cannot see.
RECIPE_VERSION=3
MIRROR=${COMPOSEOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${COMPOSEOPS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What a freshly provisioned cloud VM has: python3 (+apt bindings) for Ansible, systemd as PID 1,
# sudo and sshd so roles and tests can work over real SSH.
PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,openssh-server,iproute2,ca-certificates,procps,gnupg
# Application images run one process and install what they need in their own Dockerfile.
BASE_PACKAGES=ca-certificates

suite_of() {
  case "$1" in
    debian12) echo bookworm ;;
    debian13) echo trixie ;;
    *) die "unknown test host distribution '$1' (known: debian12 debian13)" ;;
  esac
}

engine() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and installing one needs root; run as root or start dockerd yourself"
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing Debian's docker.io (no Docker engine found)"
    apt_install docker.io
  fi
  log "starting dockerd in the background (log: /var/log/composeops-dockerd.log)"
  # setsid: the daemon must outlive this script and the shell that called it.
  setsid dockerd >/var/log/composeops-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "dockerd is up"; return 0; }
    sleep 1
  done
  tail -n 20 /var/log/composeops-dockerd.log >&2 || true
  die "dockerd did not answer within 60 s; its last log lines are above"
}

apt_updated=0
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq || die "apt-get update failed: Debian's package archive is needed to install ${missing[*]}"
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# recipe_hash KIND DISTRO PACKAGES FUNCTION…: what decides an image's content.
recipe_hash() {
  local kind=$1 distro=$2 packages=$3
  shift 3
  { echo "$kind $distro $RECIPE_VERSION $packages $MIRROR $SECURITY_MIRROR"; declare -f bootstrap_rootfs "$@"; } |
    sha256sum | cut -c1-16
}

is_current() { [ "$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$1" 2>/dev/null)" = "$2" ]; }

# bootstrap_rootfs SUITE PACKAGES DIR: a Debian minbase root with the archive's real sources
# (security updates included, deb822 form) and no apt caches.
bootstrap_rootfs() {
  local suite=$1 packages=$2 rootfs=$3
  apt_install debootstrap debian-archive-keyring
  log "debootstrap $suite into $rootfs (under a minute with a warm mirror)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap $suite failed (log above)"; }
  rm -f "$rootfs.log" "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* "$rootfs"/var/log/*.log
}

# systemd_host_tweaks DIR: what a systemd test host needs beyond the packages.
systemd_host_tweaks() {
  local rootfs=$1
  # A container has no consoles, udev or kernel modules to load; these units only fail there.
  for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
              systemd-firstboot.service systemd-remount-fs.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # Each container must get its own machine-id and host keys at first boot, not the image's…
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  # …generated the way cloud-init does on a real VM: once, before sshd first starts.
  cat >"$rootfs/etc/systemd/system/testhost-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate SSH host keys on first boot (composeops test host)
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
EOF
  ln -sf ../testhost-ssh-hostkeys.service "$rootfs/etc/systemd/system/multi-user.target.wants/testhost-ssh-hostkeys.service"
}

# slim_tweaks DIR: application images need no documentation; keep apt from adding it later.
slim_tweaks() {
  local rootfs=$1
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/composeops-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
}

# build KIND DISTRO IMAGE PACKAGES TWEAKS [IMPORT-CHANGE…]: build IMAGE unless its recipe is current.
build() {
  local kind=$1 distro=$2 image=$3 packages=$4 tweaks=$5 hash rootfs changes=()
  shift 5
  hash=$(recipe_hash "$kind" "$distro" "$packages" "$tweaks")
  if is_current "$image" "$hash"; then
    log "$image is current (recipe $hash), reusing it"
    return 0
  fi
  rootfs=$(mktemp -d /var/tmp/composeops-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "rm -rf '$rootfs' '$rootfs.log'" RETURN
  bootstrap_rootfs "$(suite_of "$distro")" "$packages" "$rootfs"
  "$tweaks" "$rootfs"
  for change in "$@" "LABEL $LABEL=$hash" "LABEL org.composeops.distro=$distro"; do
    changes+=(--change "$change")
  done
  log "importing $image"
  tar -C "$rootfs" --numeric-owner -c . | docker import "${changes[@]}" - "$image" >/dev/null
  log "$image built (recipe $hash)"
}

images() {
  engine
  local distros=("$@")
  [ ${#distros[@]} -gt 0 ] || distros=(debian12 debian13)
  for d in "${distros[@]}"; do
    build testhost "$d" "$IMAGE_REPO:$d" "$PACKAGES" systemd_host_tweaks \
      'ENV container=docker' 'CMD ["/sbin/init"]'
  done
}

base() {
  local distro=${1:-debian13}
  engine
  build appbase "$distro" "$BASE_REPO:$distro" "$BASE_PACKAGES" slim_tweaks 'ENV LANG=C.UTF-8' 'CMD ["/bin/bash"]'
  echo "$BASE_REPO:$distro"
}

cmd=${1:-}
shift || true
case "$cmd" in
  engine) engine ;;
  images) images "$@" ;;
  base) base "$@" ;;
  purge)
    mapfile -t hosts < <(docker ps -aq --filter label=org.composeops.testhost)
    [ ${#hosts[@]} -eq 0 ] || docker rm -f -v "${hosts[@]}" >/dev/null
    docker network rm "${COMPOSEOPS_TEST_NETWORK:-composeops-test}" >/dev/null 2>&1 || true
    mapfile -t images < <(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "^($IMAGE_REPO|$BASE_REPO):" || true)
    [ ${#images[@]} -eq 0 ] || docker rmi -f "${images[@]}" >/dev/null
    log "${#hosts[@]} test hosts, the test network and ${#images[@]} images removed"
    ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
