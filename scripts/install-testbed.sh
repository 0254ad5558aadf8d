#!/bin/sh
# Installs the real servers the tests start (OpenSSH, PostgreSQL, nginx, iptables, git, podman with runc,
# docker-registry with Apache's htpasswd for its bcrypt login file, a static busybox for test images, Chromium
# for the web UI's browser tests, supervisor for services on hosts, rsync for the fleet benchmark, node and npm
# for the Node examples) when missing.
# The one place that installs packages for the tests (`make testbed`; `make test` runs it first): the
# benches in tests/support only check and fail with a hint to run this.
# Needs root for apt-get; without root it only reports what is missing.
set -eu
need=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have git /usr/bin/git || need="$need git"
have sshd /usr/sbin/sshd || need="$need openssh-server"
have ssh-keygen /usr/bin/ssh-keygen || need="$need openssh-client"
have iptables /usr/sbin/iptables || need="$need iptables"
have nginx /usr/sbin/nginx || need="$need nginx"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
have unshare /usr/bin/unshare || need="$need util-linux"
have podman /usr/bin/podman || need="$need podman"
have runc /usr/sbin/runc || need="$need runc"
# podman's init for containers (services.NAME.init, on by default): only recommended by podman.
have catatonit /usr/bin/catatonit || need="$need catatonit"
have docker-registry /usr/bin/docker-registry || need="$need docker-registry"
have htpasswd /usr/bin/htpasswd || need="$need apache2-utils"
# The web UI's end-to-end tests: Playwright drives Debian's Chromium (playwright install cannot download here).
have chromium /usr/bin/chromium || need="$need chromium"
# Services on hosts (docs/services-on-hosts.md): the bed's SSH hosts have no systemd, supervisord runs them.
have supervisord /usr/bin/supervisord || need="$need supervisor"
# The systemd unit of docs/services-on-hosts.md is checked with systemd-analyze verify (systemd never runs).
have systemd-analyze /usr/bin/systemd-analyze || need="$need systemd"
# Node apps (slipway init's Node sample, examples/node-app): node, and npm for their builds.
have node /usr/bin/node || need="$need nodejs"
have npm /usr/bin/npm || need="$need npm"
# The fleet benchmark's baseline for a release with a few changed files: rsync --link-dest over ssh.
have rsync /usr/bin/rsync || need="$need rsync"
# Test images are FROM scratch: only the static busybox runs there (busybox may be the dynamic one).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need="$need busybox-static"
if [ -z "$need" ]; then
  echo "testbed: everything is installed"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "testbed: missing:$need (run as root, or install them yourself)" >&2
  exit 1
fi
echo "testbed: installing$need"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $need >/dev/null
# The packages' own services are not used by the tests; keep them from holding ports.
for svc in nginx postgresql ssh docker-registry supervisor; do
  (command -v systemctl >/dev/null 2>&1 && systemctl disable --now "$svc" >/dev/null 2>&1) || true
  (command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1) || true
done
mkdir -p /run/sshd
