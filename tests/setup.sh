#!/usr/bin/env bash
# Prepare a Debian/Ubuntu machine for ruripy's test suite (run as root):
# system packages, the unprivileged test user with a 65536-id range, and a venv at
# /opt/ruripy-venv with ruripy and its test tools installed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${RURIPY_VENV:-/opt/ruripy-venv}
user=${RURIPY_TEST_USER:-ruripy-test}

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  uidmap busybox-static bubblewrap libseccomp2 python3 python3-venv python3-pip gcc libc6-dev \
  skopeo umoci docker-registry openssl proot qemu-user-static hyperfine man-db groff-base \
  xz-utils zstd bzip2 curl util-linux tmux zsh fish btrfs-progs >/dev/null

# Foreign-architecture tests: Debian's static busybox for arm64 (run through qemu-user-static).
data=/opt/ruripy-testdata
if [ ! -x "$data/busybox-arm64" ]; then
  dpkg --add-architecture arm64
  apt-get update -qq
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt's _apt user downloads into it
  (cd "$tmp" && apt-get download -qq busybox-static:arm64 && dpkg-deb -x busybox-static_*_arm64.deb x)
  install -D -m 0755 "$tmp/x/bin/busybox" "$data/busybox-arm64"
  rm -rf "$tmp"
fi

if ! id -u "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user"
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -q "^$user:" "$f"; then
    echo "$user:200000:65536" >>"$f"
  fi
done

# A second user without any range: the single-id fallback.
nosub=${RURIPY_TEST_USER_NOSUB:-ruripy-nosub}
if ! id -u "$nosub" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$nosub"
fi
sed -i "/^$nosub:/d" /etc/subuid /etc/subgid

# The venv uses the system interpreter so the unprivileged user can run it too.
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip >/dev/null
"$venv/bin/pip" install -q "$here[test]"
# Nothing here needs setuptools at run time, and its distutils-precedence.pth hook would
# cost every ruripy start 0.5-0.8 ms (bench/); venvs made by pipx have none either.
"$venv/bin/pip" uninstall -q -y setuptools >/dev/null 2>&1 || true
chmod -R a+rX "$venv"
echo "ready: $venv/bin/ruripy, test user $user"
