#!/usr/bin/env bash
# Test host harness for composeops.platform.
#
#   testhost.sh engine            make sure a Docker engine answers (install + start dockerd if not)
#   testhost.sh images [DISTRO…]  build the systemd test host images, cached by recipe hash
#                                 (DISTRO: debian12, debian13; default both)
#
# The images are the base of every molecule scenario, of the local default host (`make local`) and
# of the stand-in application images. How a test host container is run lives in testhost.yml.
set -euo pipefail

IMAGE_REPO=${COMPOSEOPS_TESTHOST_IMAGE:-composeops/testhost}

log() { printf '[testhost] %s\n' "$*" >&2; }
die() { printf '[testhost] ERROR: %s\n' "$*" >&2; exit 1; }

# Bump when the recipe below changes in a way the hash cannot see.
RECIPE_VERSION=2
MIRROR=${COMPOSEOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${COMPOSEOPS_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# What a freshly provisioned cloud VM has: python3 (+apt bindings) for Ansible, systemd as PID 1,
# sudo and sshd so roles and tests can work over real SSH.
PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,openssh-server,iproute2,ca-certificates,procps,gnupg

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

recipe_hash() {
  # Everything that changes the image content: this script, the package list, mirror and suite.
  { cat "$0"; echo "$1 $RECIPE_VERSION $PACKAGES $MIRROR"; } | sha256sum | cut -c1-16
}

build_image() {
  local distro=$1 suite hash image current rootfs
  suite=$(suite_of "$distro")
  hash=$(recipe_hash "$distro")
  image="$IMAGE_REPO:$distro"
  current=$(docker image inspect -f '{{ index .Config.Labels "org.composeops.recipe" }}' "$image" 2>/dev/null || true)
  if [ "$current" = "$hash" ]; then
    log "$image is current (recipe $hash), reusing it"
    return 0
  fi
  apt_install debootstrap debian-archive-keyring
  rootfs=$(mktemp -d /var/tmp/composeops-rootfs.XXXXXX)
  # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
  trap "rm -rf '$rootfs'" RETURN
  log "debootstrap $suite into $rootfs (a few minutes on a cold cache)"
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; die "debootstrap $suite failed (log above)"; }
  rm -f "$rootfs.log"

  # Same sources a real host has (with security updates), in deb822 form.
  rm -f "$rootfs/etc/apt/sources.list"
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
  # A container has no consoles, udev or kernel modules to load; these units only fail there.
  for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
              systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount \
              systemd-firstboot.service systemd-remount-fs.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # Each container must get its own machine-id and host keys at first boot, not the image's.
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
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/tmp/* "$rootfs"/var/log/*.log

  log "importing $image"
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV container=docker' \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL org.composeops.recipe=$hash" \
    --change "LABEL org.composeops.distro=$distro" \
    - "$image" >/dev/null
  log "$image built (recipe $hash)"
}

images() {
  engine
  local distros=("$@")
  [ ${#distros[@]} -gt 0 ] || distros=(debian12 debian13)
  for d in "${distros[@]}"; do build_image "$d"; done
}

cmd=${1:-}
shift || true
case "$cmd" in
  engine) engine ;;
  images) images "$@" ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
