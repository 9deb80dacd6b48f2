#!/bin/sh
# Installed by composeops.platform.reverse_proxy as /usr/local/sbin/composeops-nginx-check.
#   composeops-nginx-check CANDIDATE DEST
# Runs `nginx -t` on a copy of /etc/nginx in which CANDIDATE stands at DEST (a path under
# /etc/nginx), so a file nginx would refuse never replaces the one in use. The role passes it as
# the `validate:` command of every file it writes; a rollout uses it the same way before it moves
# a new upstream file into place. The includes of nginx.conf are relative for this reason.
set -eu
candidate=$1 dest=$2
case $dest in /etc/nginx/*) ;; *) echo "composeops-nginx-check: $dest is not under /etc/nginx" >&2; exit 2 ;; esac
tmp=$(mktemp -d /tmp/composeops-nginx-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -a /etc/nginx/. "$tmp/"
rel=${dest#/etc/nginx/}
mkdir -p "$tmp/$(dirname "$rel")"
cp "$candidate" "$tmp/$rel"
# Not exec: the shell has to stay for its EXIT trap, or every check left its copy in /tmp.
nginx -q -t -c "$tmp/nginx.conf"
