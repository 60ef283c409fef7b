#!/usr/bin/env python3
"""Checks shopmind's deployment files without a cluster; run through scripts/validate-deploy.sh,
which sets up the tools (a venv with kubernetes-validate, kubectl's built-in kustomize, helm).

What it checks:
  1. deploy/k8s/overlays/{dev,prod} (and the base) render with `kubectl kustomize`;
  2. every rendered document of a core kind validates against the Kubernetes OpenAPI schema of
     KUBE_VERSION, strictly (unknown fields are errors), with kubernetes-validate;
  3. the one custom resource used, KEDA's ScaledObject, has its required fields (a small check,
     since no schema for it is packaged), and its stream and consumer names exist in the code;
  4. shopmind's own rules: non-root, read-only root filesystem, no privilege escalation, all
     capabilities dropped, seccomp, requests and limits, probes, a known subcommand, and that every
     reference (volumes, ports, ConfigMaps, PVCs, Secrets, autoscaler and PDB targets) resolves;
  5. the ConfigMap's shopmind.toml, and with it each container's flags, load with the real binary
     (`shopmind --config FILE FLAGS config`), when target/debug/shopmind is built (CI builds it in
     the test step);
  6. docker-compose.yml against the Compose Specification JSON schema (vendored, see SCHEMA_SOURCE),
     pinned image tags, and every bind-mounted file existing (named volumes declared);
  7. the compose observability stack (deploy/compose/): the OpenTelemetry collector config parses
     and takes OTLP gRPC on 0.0.0.0:4317, batches and exports OTLP to the Jaeger service; every
     shopmind service's SHOPMIND__* environment loads as a valid configuration; prometheus.yml parses and
     scrapes every shopmind service on its metrics port; Grafana's provisioned datasource points at
     the Prometheus service; every dashboard JSON parses, queries provisioned datasources, and
     names only metrics (and labels) of the catalogue in docs/METRICS.md;
  8. deploy/helm/*-values.yaml parse, and agree with the manifests (monitor port, secret names);
  9. the Helm chart deploy/helm/shopmind: `helm lint --strict` and `helm template` with its defaults,
     values-dev.yaml, values-prod.yaml and ci/all-options-values.yaml; each rendering goes through
     checks 2 to 5; the renderings of the defaults and the two overlays' values agree with
     deploy/k8s/base and the overlays (AGREE_LABELS says what agreeing means); the packaged chart
     renders as its folder; one version in Cargo.toml, Chart.yaml, the kustomize image tags,
     CHANGELOG.md and scripts/image.sh;
 10. the Dockerfile without an engine: pinned bases, a dependency stage built from the recipe of
     scripts/cargo-recipe.py alone with the source built on top, a numeric non-root USER, ONNX
     Runtime at scripts/setup.sh's version, the image's SHOPMIND__ environment loading with the
     binary; .dockerignore; the recipe's content and targets.

`--self-test` feeds deliberately broken inputs (deploy/tests/self-test/) through the same checks
and fails unless each one is rejected with the expected message, and a good one is accepted;
`--all` runs the self-test, then the validation (what CI runs).

Exit status: 0 when everything passed, 1 otherwise. Each part ends with a line
`validate-deploy: N passed, M failed` (`validate-deploy self-test: ...` for the self-test).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE_VERSION = "1.30.0"
OVERLAYS = ["deploy/k8s/base", "deploy/k8s/overlays/dev", "deploy/k8s/overlays/prod"]
EXPECTED_TAG = {"deploy/k8s/overlays/dev": "dev"}
COMPOSE_SCHEMA = ROOT / "deploy/schemas/compose-spec.json"
# The Compose Specification schema as docker-compose 1.29.2 ships it: PyPI package
# docker-compose==1.29.2, file compose/config/compose_spec.json of
# docker_compose-1.29.2-py2.py3-none-any.whl (sha256 of the wheel 8d558937...cef809, of the
# file 0dc04bd3...2b112bac). Details in deploy/schemas/SOURCES.md.
SCHEMA_SOURCE = "docker-compose==1.29.2 (PyPI): compose/config/compose_spec.json"

SUBCOMMANDS = {"gateway", "ingest", "feature", "inference", "notification", "trainer", "train", "privacy"}
# Subcommands with an action of their own (`shopmind privacy sweep`): their flags follow the action.
NESTED_SUBCOMMANDS = {"privacy"}
# Created by hand (deploy/README.md), so not in the rendered output.
EXTERNAL_SECRETS = {"shopmind-backends": {"nats-url", "redis-url"}}
RUN_AS_USER = 10001
# Custom resources we use, and how each is checked (no schema for them ships with kubernetes-validate).
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
SCALEDOBJECT_SPEC_FIELDS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
NATS_JETSTREAM_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}


class Report:
    def __init__(self, quiet: bool = False):
        self.passed = 0
        self.failed = 0
        self.quiet = quiet

    def ok(self, what: str) -> None:
        self.passed += 1
        if not self.quiet:
            print(f"  ok    {what}")

    def fail(self, what: str, errors: list[str]) -> None:
        self.failed += 1
        if not self.quiet:
            print(f"  FAIL  {what}")
            for e in errors:
                print(f"          {e}")

    def check(self, what: str, errors: list[str]) -> None:
        (self.fail(what, errors) if errors else self.ok(what))


# ---------------------------------------------------------------------------------------------
# Rendering


def render(kubectl: str, path: Path) -> tuple[list[dict], str]:
    """Renders a kustomization; returns (documents, error)."""
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        return [], (proc.stderr.strip() or f"kubectl kustomize exited {proc.returncode}")
    try:
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    except yaml.YAMLError as e:
        return [], f"rendered output is not YAML: {e}"
    return docs, ""


def kn(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


# ---------------------------------------------------------------------------------------------
# Schema checks


def schema_errors(doc: dict) -> list[str]:
    if not isinstance(doc, dict) or not all(k in doc for k in ("apiVersion", "kind", "metadata")):
        return ["not a Kubernetes object (apiVersion, kind and metadata are required)"]
    if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
        return scaledobject_errors(doc)
    try:
        kv.validate(doc, KUBE_VERSION, strict=True)
    except kv.ValidationError as e:
        where = ".".join(str(p) for p in e.path) or "(document)"
        return [f"schema {kv.major_minor(KUBE_VERSION)}: {where}: {e.message}"]
    except kv.SchemaNotFoundError as e:
        return [f"no Kubernetes {kv.major_minor(KUBE_VERSION)} schema for {e.kind} {e.api_version} "
                "(a typo in kind/apiVersion, or a custom resource this script does not know)"]
    return []


def scaledobject_errors(doc: dict) -> list[str]:
    errs: list[str] = []
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return ["spec: required"]
    for key in sorted(set(spec) - SCALEDOBJECT_SPEC_FIELDS):
        errs.append(f"spec.{key}: not a ScaledObject field")
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
        errs.append("spec.scaleTargetRef.name: required (the Deployment to scale)")
    for key in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
        if key in spec and (not isinstance(spec[key], int) or isinstance(spec[key], bool) or spec[key] < 0):
            errs.append(f"spec.{key}: must be a non-negative integer")
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        errs.append(f"spec.minReplicaCount {lo} > spec.maxReplicaCount {hi}")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        errs.append("spec.triggers: required, at least one trigger")
        return errs
    for i, t in enumerate(triggers):
        if not isinstance(t, dict) or not isinstance(t.get("type"), str):
            errs.append(f"spec.triggers[{i}].type: required")
            continue
        md = t.get("metadata")
        if not isinstance(md, dict):
            errs.append(f"spec.triggers[{i}].metadata: required")
            continue
        for k, v in md.items():
            if not isinstance(v, str):
                errs.append(f"spec.triggers[{i}].metadata.{k}: must be a string (KEDA metadata values are strings)")
        if t["type"] == "nats-jetstream":
            for k in sorted(NATS_JETSTREAM_REQUIRED - set(md)):
                errs.append(f"spec.triggers[{i}].metadata.{k}: required by the nats-jetstream trigger")
            if "lagThreshold" in md and not str(md["lagThreshold"]).isdigit():
                errs.append(f"spec.triggers[{i}].metadata.lagThreshold: must be a whole number")
            endpoint = str(md.get("natsServerMonitoringEndpoint", ""))
            if endpoint and not re.fullmatch(r"[A-Za-z0-9.-]+:\d+", endpoint):
                errs.append(f"spec.triggers[{i}].metadata.natsServerMonitoringEndpoint: expected host:port, got {endpoint!r}")
    return errs


# ---------------------------------------------------------------------------------------------
# shopmind's rules and cross-references


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind == "Pod":
        return spec
    return None


def pod_labels(doc: dict) -> dict:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}


def workload_errors(doc: dict, index: dict) -> list[str]:
    """The rules every shopmind pod follows; `index` holds the rendered objects by kind and name."""
    ps = pod_spec(doc)
    if ps is None:
        return []
    errs: list[str] = []
    psc = ps.get("securityContext") or {}
    if ps.get("automountServiceAccountToken") is not False:
        errs.append("automountServiceAccountToken: must be false (shopmind never calls the Kubernetes API)")
    sa = ps.get("serviceAccountName")
    if sa and sa not in index.get("ServiceAccount", {}):
        errs.append(f"serviceAccountName {sa!r}: no such ServiceAccount")
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != RUN_AS_USER:
        errs.append(f"pod securityContext: runAsNonRoot: true and runAsUser: {RUN_AS_USER} required")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errs.append("pod securityContext.seccompProfile.type: must be RuntimeDefault")
    grace = ps.get("terminationGracePeriodSeconds", 30)
    if grace < 25:
        errs.append(f"terminationGracePeriodSeconds {grace}: below the services' 20 s grace plus preStop")

    volumes = {v.get("name"): v for v in ps.get("volumes") or []}
    for name, v in volumes.items():
        if "configMap" in v and v["configMap"].get("name") not in index.get("ConfigMap", {}):
            errs.append(f"volume {name}: ConfigMap {v['configMap'].get('name')!r} is not rendered")
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"].get("claimName")
            if claim not in index.get("PersistentVolumeClaim", {}):
                errs.append(f"volume {name}: PersistentVolumeClaim {claim!r} is not rendered")

    containers = [("container", c) for c in ps.get("containers") or []]
    containers += [("initContainer", c) for c in ps.get("initContainers") or []]
    for role, c in containers:
        where = f"{role} {c.get('name')}"
        image = str(c.get("image", ""))
        if "@sha256:" in image:  # pinned by digest (repo@sha256:... or repo:tag@sha256:...)
            name, _, tag = image.partition("@")
            repo = name.rpartition(":")[0] if ":" in name.rsplit("/", 1)[-1] else name
        else:
            repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        if not repo.endswith("shopmind") or not tag or tag == "latest":
            errs.append(f"{where}: image {image!r} must be shopmind:<tag> (a pinned tag, not latest)")
        if role == "container":
            args = c.get("args") or []
            if not args or args[0] not in SUBCOMMANDS:
                errs.append(f"{where}: args must start with a shopmind subcommand, got {args[:1]}")
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            errs.append(f"{where}: securityContext.allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            errs.append(f"{where}: securityContext.readOnlyRootFilesystem must be true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            errs.append(f"{where}: securityContext.capabilities.drop must include ALL")
        if sc.get("privileged"):
            errs.append(f"{where}: must not be privileged")
        if sc.get("runAsUser", RUN_AS_USER) != RUN_AS_USER or sc.get("runAsNonRoot", True) is not True:
            errs.append(f"{where}: must run as user {RUN_AS_USER}, non-root")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    errs.append(f"{where}: resources.{part}.{r} required")
        mounts = c.get("volumeMounts") or []
        for m in mounts:
            if m.get("name") not in volumes:
                errs.append(f"{where}: volumeMount {m.get('name')!r} has no volume")
        if role == "container" and not any(m.get("mountPath") == "/tmp" for m in mounts):
            errs.append(f"{where}: needs a writable /tmp (emptyDir): the root filesystem is read-only")
        ports = {p.get("name") for p in c.get("ports") or []}
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(probe_name)
            if probe is None:
                if doc.get("kind") == "Deployment" and probe_name != "startupProbe":
                    errs.append(f"{where}: {probe_name} required")
                continue
            port = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                errs.append(f"{where}: {probe_name} port {port!r} is not a named containerPort")
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                name, key = ref.get("name"), ref.get("key")
                known = EXTERNAL_SECRETS.get(name)
                secret = index.get("Secret", {}).get(name)
                if known is None and secret is None:
                    errs.append(f"{where}: env {e.get('name')}: Secret {name!r} is neither rendered nor documented")
                elif known is not None and key not in known:
                    errs.append(f"{where}: env {e.get('name')}: Secret {name!r} has no key {key!r} (keys: {sorted(known)})")
            cm = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if cm and cm.get("name") not in index.get("ConfigMap", {}):
                errs.append(f"{where}: env {e.get('name')}: ConfigMap {cm.get('name')!r} is not rendered")
    return errs


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def reference_errors(doc: dict, index: dict) -> list[str]:
    """Services, autoscalers and PDBs must point at something that exists."""
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    workloads = list(index.get("Deployment", {}).values())
    errs: list[str] = []
    if kind == "Deployment":
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not matches(sel, pod_labels(doc)):
            errs.append("spec.selector.matchLabels does not match the pod template's labels")
    elif kind == "Service":
        targets = [w for w in workloads if matches(spec.get("selector") or {}, pod_labels(w))]
        if not targets:
            errs.append(f"selector {spec.get('selector')} matches no Deployment's pods")
        for p in spec.get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            for w in targets:
                names = {q.get("name") for c in pod_spec(w).get("containers", []) for q in c.get("ports") or []}
                numbers = {q.get("containerPort") for c in pod_spec(w).get("containers", []) for q in c.get("ports") or []}
                if tp not in names and tp not in numbers:
                    errs.append(f"port {p.get('name')}: targetPort {tp!r} is not a port of {kn(w)}")
    elif kind == "PodDisruptionBudget":
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if not any(matches(sel, pod_labels(w)) for w in workloads):
            errs.append(f"selector {sel} matches no Deployment's pods")
        if "minAvailable" in spec and "maxUnavailable" in spec:
            errs.append("minAvailable and maxUnavailable are exclusive")
    elif kind == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment" or ref.get("name") not in index.get("Deployment", {}):
            errs.append(f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not a rendered Deployment")
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            errs.append("minReplicas > maxReplicas")
    elif kind == "ScaledObject":
        name = (spec.get("scaleTargetRef") or {}).get("name")
        if name not in index.get("Deployment", {}):
            errs.append(f"scaleTargetRef {name!r} is not a rendered Deployment")
        owned = {d["spec"]["scaleTargetRef"].get("name") for d in index.get("HorizontalPodAutoscaler", {}).values()}
        if name in owned:
            errs.append(f"{name} also has a HorizontalPodAutoscaler; KEDA creates its own")
        for i, t in enumerate(spec.get("triggers") or []):
            md = t.get("metadata") or {}
            if t.get("type") == "nats-jetstream":
                streams, consumers = code_names()
                if md.get("stream") not in streams:
                    errs.append(f"triggers[{i}]: stream {md.get('stream')!r} is not one shopmind creates {sorted(streams)}")
                if md.get("consumer") not in consumers:
                    errs.append(f"triggers[{i}]: consumer {md.get('consumer')!r} is not a durable consumer of shopmind {sorted(consumers)}")
    if kind in ("Deployment",) and (doc.get("metadata") or {}).get("name") in {
        d["spec"]["scaleTargetRef"].get("name") for d in index.get("HorizontalPodAutoscaler", {}).values()
    } | {(d.get("spec") or {}).get("scaleTargetRef", {}).get("name") for d in index.get("ScaledObject", {}).values()}:
        if "replicas" in spec:
            errs.append("replicas is set although an autoscaler owns it (each apply would reset it)")
    return errs


_CODE_NAMES: tuple[set, set] | None = None


def code_names() -> tuple[set, set]:
    """Stream names and durable consumer names, read from the Rust source."""
    global _CODE_NAMES
    if _CODE_NAMES is None:
        topology = (ROOT / "crates/runtime/src/topology.rs").read_text()
        streams = set(re.findall(r'pub const \w+_STREAM: &str = "([A-Z_]+)";', topology))
        consumers = set()
        for lib in (ROOT / "services").glob("*/src/lib.rs"):
            consumers |= set(re.findall(r'pub const \w*DURABLE: &str = "([a-z_-]+)";', lib.read_text()))
        _CODE_NAMES = (streams, consumers)
    return _CODE_NAMES


def index_of(docs: list[dict]) -> dict[str, dict[str, dict]]:
    """The rendered objects by kind and name."""
    index: dict[str, dict[str, dict]] = {}
    for d in docs:
        if isinstance(d, dict):
            index.setdefault(str(d.get("kind")), {})[str((d.get("metadata") or {}).get("name"))] = d
    return index


def document_errors(doc: dict, index: dict, expected_tag: str | None = None) -> list[str]:
    """The schema, then shopmind's rules and references, of one rendered object."""
    errs = schema_errors(doc)
    if errs:
        return errs
    errs = workload_errors(doc, index) + reference_errors(doc, index)
    if expected_tag:
        for _, c in containers_of(doc):
            if not str(c.get("image", "")).endswith(":" + expected_tag):
                errs.append(f"container {c.get('name')}: image {c.get('image')!r}, expected tag {expected_tag}")
    return errs


def check_documents(docs: list[dict], source: str, report: Report, expected_tag: str | None = None) -> None:
    index = index_of(docs)
    for d in docs:
        report.check(f"{source}: {kn(d)}", document_errors(d, index, expected_tag))


def containers_of(doc: dict):
    ps = pod_spec(doc) or {}
    for c in ps.get("containers") or []:
        yield "container", c
    for c in ps.get("initContainers") or []:
        yield "initContainer", c


# ---------------------------------------------------------------------------------------------
# Configuration file, compose file, Helm values


def find_binary() -> Path | None:
    for p in (ROOT / "target/debug/shopmind", ROOT / "target/release/shopmind"):
        if p.is_file() and os.access(p, os.X_OK):
            return p
    return None


def config_errors(docs: list[dict], binary: Path) -> list[str]:
    """Loads each ConfigMap's shopmind.toml with the binary, then, with that file, the flags every
    container passes after its subcommand and the SHOPMIND__* values of its environment
    (`shopmind <flags> config` parses and validates them)."""
    cms = [d for d in docs if d.get("kind") == "ConfigMap" and "shopmind.toml" in (d.get("data") or {})]
    if not cms:
        return ["no ConfigMap with a shopmind.toml key"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPMIND")}
    # What the pods get from the Secret, so the whole configuration validates as it will there:
    # the rendered backends Secret's URLs (the Helm chart makes one), else typical ones.
    backends = next((d.get("stringData") or {} for d in docs if d.get("kind") == "Secret"
                     and dig(d, "metadata", "name") in EXTERNAL_SECRETS), {})
    env["SHOPMIND__NATS__URL"] = backends.get("nats-url", "nats://nats.nats.svc.cluster.local:4222")
    env["SHOPMIND__REDIS__URL"] = backends.get("redis-url", "redis://:password@redis-master.redis.svc.cluster.local:6379/")
    errs = []

    def run(args: list[str], toml: str, extra: dict[str, str] | None = None) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(toml)
            f.flush()
            proc = subprocess.run([str(binary), "--config", f.name, *args, "config"],
                                  capture_output=True, text=True, env={**env, **(extra or {})})
        return "" if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()

    for cm in cms:
        err = run([], cm["data"]["shopmind.toml"])
        if err:
            errs.append(f"{kn(cm)}: shopmind.toml rejected by {binary.name}: {err}")
    toml = cms[0]["data"]["shopmind.toml"]
    for d in docs:
        for role, c in containers_of(d):
            args = c.get("args") or []
            if role == "container" and args and args[0] in SUBCOMMANDS:
                flags = list(args[2:] if args[0] in NESTED_SUBCOMMANDS else args[1:])
                literal = {str(e.get("name")): str(e["value"]) for e in c.get("env") or []
                           if str(e.get("name", "")).startswith("SHOPMIND__") and "value" in e}
                err = run(flags, toml, literal)
                if err:
                    errs.append(f"{kn(d)} container {c.get('name')}: flags {flags} with {sorted(literal)} "
                                f"rejected by {binary.name}: {err}")
    return errs


def compose_errors(path: Path) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [f"not YAML: {e}"]
    validator = jsonschema.Draft201909Validator(schema)
    errs = []
    for e in sorted(validator.iter_errors(data), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in e.path) or "(top level)"
        errs.append(f"{where}: {e.message}")
    if not errs:
        for name, svc in (data.get("services") or {}).items():
            cmd = svc.get("command")
            if svc.get("image", "").startswith("shopmind") and (not cmd or cmd[0] not in SUBCOMMANDS):
                errs.append(f"services.{name}.command: must start with a shopmind subcommand, got {cmd}")
        errs += compose_image_errors(data) + compose_mount_errors(data, path.parent)
    return errs


def compose_image_errors(data: dict) -> list[str]:
    """Every image has a pinned tag (or digest); `latest` and no tag are refused. A service that is
    built here (`build:`) names its local tag."""
    errs = []
    for name, svc in (data.get("services") or {}).items():
        image = str(svc.get("image") or "")
        if not image:
            if "build" not in svc:
                errs.append(f"services.{name}: neither image nor build")
            continue
        _, tag = image_repo_tag(image)
        if not tag or tag == "latest":
            errs.append(f"services.{name}.image {image!r}: must pin a tag (not latest, not none)")
    return errs


def compose_mount_errors(data: dict, base: Path) -> list[str]:
    """Bind mounts (and file-based configs and secrets) name files that exist, relative to the
    compose file; named volumes are declared under the top-level `volumes:`."""
    errs = []
    declared = set((data.get("volumes") or {}).keys())
    for name, svc in (data.get("services") or {}).items():
        for i, v in enumerate(svc.get("volumes") or []):
            kind, source, _target = parse_volume(v)
            where = f"services.{name}.volumes[{i}]"
            if kind == "bind":
                if not resolve_host(source, base).exists():
                    errs.append(f"{where}: bind mount source {source} does not exist "
                                f"(looked for {rel(resolve_host(source, base))})")
            elif kind == "volume" and source and source not in declared:
                errs.append(f"{where}: named volume {source!r} is not declared under top-level volumes")
    for section in ("configs", "secrets"):
        for key, spec in (data.get(section) or {}).items():
            if isinstance(spec, dict) and spec.get("file") and not resolve_host(spec["file"], base).exists():
                errs.append(f"{section}.{key}.file {spec['file']}: does not exist")
    return errs


def parse_volume(v) -> tuple[str, str, str]:
    """(kind, source, target) of a compose volume entry: kind is bind, volume or tmpfs/anonymous."""
    if isinstance(v, dict):
        kind, source, target = str(v.get("type", "volume")), str(v.get("source") or ""), str(v.get("target") or "")
        return kind, source, target
    parts = str(v).split(":")
    if len(parts) == 1:
        return "anonymous", "", parts[0]
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return kind, source, target


def resolve_host(source: str, base: Path) -> Path:
    return Path(os.path.expanduser(source)) if source.startswith(("/", "~")) else (base / source).resolve()


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def image_repo_tag(image: str) -> tuple[str, str]:
    if "@sha256:" in image:
        repo, _, digest = image.partition("@")
        return repo, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = image.rpartition(":")
        return repo, tag
    return image, ""


# ---------------------------------------------------------------------------------------------
# The observability stack of docker-compose.yml: OpenTelemetry collector, Jaeger, Prometheus and
# Grafana, their configuration files (deploy/compose/) and the dashboard's metric names.

METRICS_DOC = ROOT / "docs/METRICS.md"
# Where an image reads its configuration file: the flag, and the path without it.
CONFIG_FLAGS = {
    "otel/opentelemetry-collector-contrib": ("--config", "/etc/otelcol-contrib/config.yaml"),
    "otel/opentelemetry-collector": ("--config", "/etc/otelcol/config.yaml"),
    "prom/prometheus": ("--config.file", "/etc/prometheus/prometheus.yml"),
}
JAEGER_IMAGES = {"jaegertracing/all-in-one"}
GRAFANA_IMAGES = {"grafana/grafana", "grafana/grafana-oss"}
GRAFANA_PROVISIONING = "/etc/grafana/provisioning"
OTLP_GRPC_PORT = 4317
PROMETHEUS_PORT = 9090
# What the dashboards must show between them (issue "Deploy and observe"): ingest rate, consumer
# lag, dead letters, inference queue and compute time, batch size, gateway latency.
DASHBOARD_MUST_USE = {
    "shopmind_events_received_total", "shopmind_consumer_lag_messages", "shopmind_dead_letters_total",
    "shopmind_model_session_wait_seconds", "shopmind_model_compute_seconds",
    "shopmind_model_history_length", "shopmind_gateway_request_duration_seconds",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}
TARGET_LABELS = {"job", "instance"}


def service_env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(e).partition("=")[::2] for e in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def services_by_image(compose: dict, repos: set[str]) -> dict[str, dict]:
    return {n: s for n, s in (compose.get("services") or {}).items()
            if image_repo_tag(str(s.get("image") or ""))[0] in repos}


def shopmind_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in (compose.get("services") or {}).items()
            if str(s.get("image") or "").startswith("shopmind")}


def container_to_host(svc: dict, container_path: str, base: Path) -> Path | None:
    """The host path a container path comes from, through the service's bind mounts."""
    best = None
    for v in svc.get("volumes") or []:
        kind, source, target = parse_volume(v)
        target = target.rstrip("/")
        if kind != "bind" or not target:
            continue
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > len(best[0]):
                best = (target, source)
    if best is None:
        return None
    target, source = best
    return resolve_host(source, base) / container_path[len(target):].lstrip("/")


def config_path(svc: dict) -> str | None:
    """The configuration file the service's command names, or the image's default."""
    repo, _ = image_repo_tag(str(svc.get("image") or ""))
    if repo not in CONFIG_FLAGS:
        return None
    flag, default = CONFIG_FLAGS[repo]
    cmd = svc.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    for i, a in enumerate(cmd):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(cmd):
            return cmd[i + 1]
    return default


def host_port(s: str) -> tuple[str, int | None]:
    s = re.sub(r"^[a-z]+://", "", str(s)).split("/", 1)[0]
    host, _, port = s.rpartition(":")
    return (host, int(port)) if port.isdigit() else (s, None)


def load_yaml_mapping(path: Path) -> tuple[dict | None, list[str]]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return None, [f"not YAML: {e}"]
    except OSError as e:
        return None, [f"cannot read: {e}"]
    if not isinstance(data, dict):
        return None, ["not a YAML mapping"]
    return data, []


# --- docs/METRICS.md and PromQL


def metric_catalogue(doc: Path = METRICS_DOC) -> dict[str, dict]:
    """{name: {"type": ..., "labels": {...}}} from the catalogue table of docs/METRICS.md."""
    text = doc.read_text()
    m = re.search(r"<!-- catalogue:start.*?-->(.*?)<!-- catalogue:end -->", text, re.S)
    out = {}
    for line in (m.group(1) if m else "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"`[a-zA-Z_:][\w:]*`", cells[0]):
            continue
        out[cells[0].strip("`")] = {"type": cells[1], "labels": set(re.findall(r"`(\w+)`:", cells[2]))}
    return out


def series_names(catalogue: dict[str, dict]) -> dict[str, set[str]]:
    """Every series name a query can select, with its labels (histograms: _bucket with le, _sum, _count)."""
    out = {}
    for name, m in catalogue.items():
        if m["type"] == "histogram":
            out[name + "_bucket"] = m["labels"] | {"le"}
            out[name + "_sum"] = set(m["labels"])
            out[name + "_count"] = set(m["labels"])
        else:
            out[name] = set(m["labels"])
    return out


_STR = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''


def promql_refs(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses. Grafana variables count as numbers."""
    metrics: set[str] = set()
    labels: set[str] = set()
    e = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", "0", expr)
    e = re.sub(r"#[^\n]*", "", e)

    def selector(m: re.Match) -> str:
        for lab, op, val in re.findall(r"(\w+)\s*(=~|!~|!=|=)\s*(" + _STR + ")", m.group(1)):
            if lab == "__name__" and op == "=":
                metrics.add(val[1:-1])
            elif lab != "__name__":
                labels.add(lab)
        return " "

    e = re.sub(r"\{((?:[^{}\"']|" + _STR + r")*)\}", selector, e)
    e = re.sub(_STR, " 0 ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\boffset\s+-?[\w.]+|@\s*(?:start\(\)|end\(\)|[\d.]+)", " ", e)

    def grouping(m: re.Match) -> str:
        labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "

    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", grouping, e)
    for m in re.finditer(r"[a-zA-Z_:][\w:]*|\d[\w.]*|\S", e):
        tok = m.group(0)
        if not re.match(r"[a-zA-Z_:]", tok) or tok.lower() in PROMQL_KEYWORDS:
            continue
        if e[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        metrics.add(tok)
    return metrics, labels


# --- Grafana


def dashboard_errors(path: Path, datasource_uids: set[str], catalogue: dict[str, dict],
                     target_labels: set[str] = TARGET_LABELS, used: set[str] | None = None) -> list[str]:
    """The dashboard JSON parses; panels query provisioned datasources; every metric its PromQL
    names is in docs/METRICS.md (histograms through _bucket, _sum or _count) and every label it
    names belongs to one of those metrics (or is a target label). `used` collects the metrics."""
    try:
        dash = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        return [f"not JSON: {e}"]
    if not isinstance(dash, dict):
        return ["not a JSON object (a Grafana dashboard)"]
    errs = []
    for key in ("uid", "title"):
        if not isinstance(dash.get(key), str) or not dash[key]:
            errs.append(f"{key}: required (a non-empty string)")
    series = series_names(catalogue)

    def panels(ps):
        for p in ps or []:
            if isinstance(p, dict):
                yield p
                yield from panels(p.get("panels"))

    ids, exprs = [], []
    for p in panels(dash.get("panels")):
        title = p.get("title", "?")
        ids.append(p.get("id"))
        for ds in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets") or [] if isinstance(t, dict)]:
            uid = ds.get("uid") if isinstance(ds, dict) else ds
            if isinstance(uid, str) and not uid.startswith("$") and uid not in datasource_uids:
                errs.append(f"panel {title!r}: datasource uid {uid!r} is not provisioned ({sorted(datasource_uids)})")
        for t in p.get("targets") or []:
            if not isinstance(t, dict):
                continue
            if not isinstance(t.get("expr"), str) or not t["expr"].strip():
                errs.append(f"panel {title!r} target {t.get('refId')}: no PromQL expr")
                continue
            exprs.append((f"panel {title!r} target {t.get('refId')}", t["expr"]))
    for v in (dash.get("templating") or {}).get("list") or []:
        q = v.get("query") if isinstance(v, dict) else None
        q = q.get("query") if isinstance(q, dict) else q
        if isinstance(v, dict) and v.get("type") == "query" and isinstance(q, str):
            m = re.fullmatch(r"\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*", q, re.S)
            if not (m and re.fullmatch(r"\s*\w+\s*", m.group(1) or "")):
                exprs.append((f"variable {v.get('name')!r}", m.group(1) if m else q))
    dup = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
    if dup:
        errs.append(f"panel ids {dup}: not unique")
    if not exprs:
        errs.append("no PromQL query in any panel")
    for where, expr in exprs:
        metrics, labels = promql_refs(expr)
        if not metrics:
            errs.append(f"{where}: no metric name found in {expr!r}")
        known_labels = set(target_labels)
        for name in sorted(metrics):
            if name in series:
                known_labels |= series[name]
                if used is not None:
                    used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name not in catalogue else name)
            elif catalogue.get(name, {}).get("type") == "histogram":
                errs.append(f"{where}: {name} is a histogram: query {name}_bucket, {name}_sum or {name}_count")
            else:
                errs.append(f"{where}: metric {name} is not in docs/METRICS.md")
        for lab in sorted(labels - known_labels):
            if all(n in series for n in metrics):
                errs.append(f"{where}: label {lab!r} is not a label of {sorted(metrics)} (docs/METRICS.md) "
                            f"nor a target label {sorted(target_labels)}")
    return errs


def grafana_datasource_errors(files: list[Path], compose: dict) -> tuple[list[str], set[str]]:
    errs, uids = [], set()
    prometheus = services_by_image(compose, {"prom/prometheus"})
    if not files:
        return ["no datasource file (*.yaml, *.yml) mounted"], uids
    for f in files:
        data, e = load_yaml_mapping(f)
        if e:
            errs += [f"{rel(f)}: {x}" for x in e]
            continue
        if data.get("apiVersion") != 1:
            errs.append(f"{rel(f)}: apiVersion must be 1")
        for i, ds in enumerate(data.get("datasources") or []):
            where = f"{rel(f)}: datasources[{i}]"
            if not isinstance(ds, dict) or not ds.get("name") or not ds.get("type"):
                errs.append(f"{where}: name and type required")
                continue
            if ds.get("uid"):
                if ds["uid"] in uids:
                    errs.append(f"{where}: uid {ds['uid']!r} twice")
                uids.add(str(ds["uid"]))
            if ds["type"] == "prometheus":
                host, port = host_port(str(ds.get("url") or ""))
                if host not in prometheus:
                    errs.append(f"{where}: url {ds.get('url')!r}: {host!r} is not a Prometheus service of "
                                f"docker-compose.yml ({sorted(prometheus)})")
                elif port != PROMETHEUS_PORT:
                    errs.append(f"{where}: url {ds.get('url')!r}: Prometheus listens on {PROMETHEUS_PORT} in its container")
    if not any(isinstance(ds, dict) and ds.get("type") == "prometheus"
               for f in files for ds in ((load_yaml_mapping(f)[0] or {}).get("datasources") or [])):
        errs.append("no Prometheus datasource provisioned")
    return errs, uids


def grafana_errors(name: str, svc: dict, compose: dict, base: Path,
                   catalogue: dict[str, dict], target_labels: set[str]) -> list[tuple[str, list[str]]]:
    out = []
    ds_dir = container_to_host(svc, GRAFANA_PROVISIONING + "/datasources", base)
    db_dir = container_to_host(svc, GRAFANA_PROVISIONING + "/dashboards", base)
    ds_files = sorted(p for p in ds_dir.glob("*.y*ml")) if ds_dir and ds_dir.is_dir() else []
    errs, uids = grafana_datasource_errors(ds_files, compose)
    if ds_dir is None:
        errs.insert(0, f"nothing mounted at {GRAFANA_PROVISIONING}/datasources")
    out.append((f"grafana datasources ({rel(ds_dir) if ds_dir else 'not mounted'})", errs))

    errs, dashboards = [], []
    if db_dir is None or not db_dir.is_dir():
        errs.append(f"nothing mounted at {GRAFANA_PROVISIONING}/dashboards")
    else:
        files = sorted(db_dir.glob("*.y*ml"))
        if not files:
            errs.append(f"{rel(db_dir)}: no dashboard provider file")
        for f in files:
            data, e = load_yaml_mapping(f)
            if e:
                errs += [f"{rel(f)}: {x}" for x in e]
                continue
            for i, prov in enumerate(data.get("providers") or []):
                path = dig(prov, "options", "path")
                where = f"{rel(f)}: providers[{i}]"
                if prov.get("type", "file") != "file" or not path:
                    errs.append(f"{where}: type file with options.path required")
                    continue
                host = container_to_host(svc, str(path).rstrip("/"), base)
                if host is None or not host.is_dir():
                    errs.append(f"{where}: options.path {path} is not a directory mounted into {name}")
                    continue
                found = sorted(host.rglob("*.json"))
                if not found:
                    errs.append(f"{where}: no dashboard JSON in {rel(host)}")
                dashboards += found
    home = service_env(svc).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        h = container_to_host(svc, home, base)
        if h is None or not h.is_file():
            errs.append(f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home}: not a mounted file")
    out.append((f"grafana dashboard providers ({rel(db_dir) if db_dir else 'not mounted'})", errs))

    used: set[str] = set()
    for d in dashboards:
        out.append((f"{rel(d)}: parses, datasources provisioned, metrics and labels in docs/METRICS.md",
                    dashboard_errors(d, uids, catalogue, target_labels, used)))
    missing = sorted(DASHBOARD_MUST_USE - used)
    out.append(("grafana dashboards show ingest, lag, dead letters, inference queue and compute, batch size, "
                "gateway latency", [f"no panel queries {m}" for m in missing]))
    return out


# --- Prometheus


def metrics_port(svc: dict) -> int | None:
    listen = service_env(svc).get("SHOPMIND__METRICS__LISTEN", "0.0.0.0:9090")  # the Dockerfile's ENV
    return host_port(listen)[1] if listen else None


def prometheus_errors(path: Path, compose: dict) -> list[str]:
    """prometheus.yml parses, scrapes every shopmind service of the compose file on its metrics
    port, and every target is a compose service."""
    data, errs = load_yaml_mapping(path)
    if data is None:
        return errs
    services = compose.get("services") or {}
    shopmind = {n: metrics_port(s) for n, s in shopmind_services(compose).items()}
    jobs = data.get("scrape_configs")
    if not isinstance(jobs, list) or not jobs:
        return ["scrape_configs: required, a non-empty list"]
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        v = dig(data, "global", key)
        if v is not None and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(v)):
            errs.append(f"global.{key} {v!r}: not a Prometheus duration")
    names, scraped = [], set()
    for i, job in enumerate(jobs):
        if not isinstance(job, dict) or not job.get("job_name"):
            errs.append(f"scrape_configs[{i}]: job_name required")
            continue
        jn = job["job_name"]
        if jn in names:
            errs.append(f"job {jn!r}: job_name twice")
        names.append(jn)
        path_ = job.get("metrics_path", "/metrics")
        for sc in job.get("static_configs") or []:
            for t in (sc or {}).get("targets") or []:
                host, port = host_port(str(t))
                if port is None:
                    errs.append(f"job {jn!r}: target {t!r} is not host:port")
                elif host in ("localhost", "127.0.0.1"):
                    continue
                elif host not in services:
                    errs.append(f"job {jn!r}: target {t}: {host!r} is not a service of docker-compose.yml")
                elif host in shopmind:
                    if port != shopmind[host]:
                        errs.append(f"job {jn!r}: target {t}: {host} serves metrics on port {shopmind[host]}")
                    elif path_ != "/metrics":
                        errs.append(f"job {jn!r}: metrics_path {path_!r}: shopmind serves GET /metrics")
                    elif job.get("scheme", "http") != "http":
                        errs.append(f"job {jn!r}: scheme {job.get('scheme')!r}: shopmind serves plain http")
                    else:
                        scraped.add(host)
                elif port == 8222:
                    errs.append(f"job {jn!r}: target {t}: NATS' monitoring port serves JSON, not the "
                                "Prometheus format (scrape a prometheus-nats-exporter instead)")
    for s in sorted(set(shopmind) - scraped):
        errs.append(f"{s}:{shopmind[s]} is not scraped (every shopmind service serves /metrics)")
    return errs


def prometheus_target_labels(path: Path) -> set[str]:
    data, _ = load_yaml_mapping(path)
    labels = set(TARGET_LABELS)
    for job in (data or {}).get("scrape_configs") or []:
        for sc in (job or {}).get("static_configs") or []:
            labels |= set(((sc or {}).get("labels") or {}).keys())
    return labels


# --- OpenTelemetry collector


def otel_grpc_port(data: dict) -> int | None:
    for name, r in (data.get("receivers") or {}).items():
        if name == "otlp" or str(name).startswith("otlp/"):
            ep = dig(r, "protocols", "grpc", "endpoint")
            if ep:
                return host_port(str(ep))[1]
    return None


def otel_errors(path: Path, compose: dict) -> list[str]:
    """The collector configuration parses; its traces pipeline takes OTLP gRPC on 0.0.0.0:4317,
    batches, and exports over OTLP to the compose Jaeger (all-in-one with COLLECTOR_OTLP_ENABLED);
    every component a pipeline names is defined."""
    data, errs = load_yaml_mapping(path)
    if data is None:
        return errs
    pipelines = dig(data, "service", "pipelines")
    if not isinstance(pipelines, dict) or not pipelines:
        return errs + ["service.pipelines: required"]
    for ext in dig(data, "service", "extensions") or []:
        if ext not in (data.get("extensions") or {}):
            errs.append(f"service.extensions: {ext!r} is not defined under extensions")
    for pname, p in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for comp in (p or {}).get(section) or []:
                if comp not in (data.get(section) or {}) and not (section == "receivers" and comp in (data.get("connectors") or {})):
                    errs.append(f"service.pipelines.{pname}.{section}: {comp!r} is not defined under {section}")
        for section in ("receivers", "exporters"):
            if not (p or {}).get(section):
                errs.append(f"service.pipelines.{pname}.{section}: at least one required")
    traces = {n: p or {} for n, p in pipelines.items() if n == "traces" or str(n).startswith("traces/")}
    if not traces:
        return errs + ["service.pipelines: no traces pipeline"]
    jaegers = services_by_image(compose, JAEGER_IMAGES)
    for pname, p in traces.items():
        where = f"service.pipelines.{pname}"
        otlp_in = [r for r in p.get("receivers") or [] if r == "otlp" or str(r).startswith("otlp/")]
        if not otlp_in:
            errs.append(f"{where}.receivers: an otlp receiver required (shopmind exports OTLP)")
        for r in otlp_in:
            ep = dig(data, "receivers", r, "protocols", "grpc", "endpoint")
            if dig(data, "receivers", r, "protocols") is None or "grpc" not in (dig(data, "receivers", r, "protocols") or {}):
                errs.append(f"receivers.{r}.protocols.grpc: required (shopmind exports OTLP over gRPC)")
            elif not ep:
                errs.append(f"receivers.{r}.protocols.grpc.endpoint: set it to 0.0.0.0:{OTLP_GRPC_PORT} "
                            "(the default binds localhost, unreachable from other containers)")
            else:
                host, port = host_port(str(ep))
                if host not in ("0.0.0.0", "", "[::]", "::"):
                    errs.append(f"receivers.{r}.protocols.grpc.endpoint {ep}: binds {host}, unreachable from "
                                f"other containers; use 0.0.0.0:{OTLP_GRPC_PORT}")
                if port != OTLP_GRPC_PORT:
                    errs.append(f"receivers.{r}.protocols.grpc.endpoint {ep}: OTLP gRPC is port {OTLP_GRPC_PORT}")
        if not any(x == "batch" or str(x).startswith("batch/") for x in p.get("processors") or []):
            errs.append(f"{where}.processors: a batch processor required")
        otlp_out = [x for x in p.get("exporters") or [] if x == "otlp" or str(x).startswith("otlp/")]
        to_jaeger = False
        for x in otlp_out:
            cfg = dig(data, "exporters", x) or {}
            ep = str(cfg.get("endpoint") or "")
            host, port = host_port(ep)
            if host not in jaegers:
                continue
            to_jaeger = True
            if port != OTLP_GRPC_PORT:
                errs.append(f"exporters.{x}.endpoint {ep}: Jaeger takes OTLP gRPC on {OTLP_GRPC_PORT}")
            if dig(cfg, "tls", "insecure") is not True and not ep.startswith("http://"):
                errs.append(f"exporters.{x}: tls.insecure: true required (Jaeger's OTLP receiver is plaintext)")
            if service_env(jaegers[host]).get("COLLECTOR_OTLP_ENABLED", "").lower() != "true":
                errs.append(f"exporters.{x}: services.{host} needs COLLECTOR_OTLP_ENABLED: \"true\"")
        if not to_jaeger:
            errs.append(f"{where}.exporters: an otlp exporter to Jaeger ({sorted(jaegers) or 'no jaegertracing/all-in-one service'}"
                        f":{OTLP_GRPC_PORT}) required, got {p.get('exporters')}")
    return errs


def observability_checks(compose_path: Path) -> list[tuple[str, list[str]]]:
    """The compose file's observability services, their mounted configuration, and that every
    shopmind service exports traces to the collector and serves metrics to Prometheus."""
    try:
        compose = yaml.safe_load(compose_path.read_text()) or {}
    except yaml.YAMLError as e:
        return [("docker-compose.yml observability", [f"not YAML: {e}"])]
    base = compose_path.parent
    catalogue = metric_catalogue()
    out = []
    collectors = services_by_image(compose, {"otel/opentelemetry-collector-contrib", "otel/opentelemetry-collector"})
    roles = {
        "OpenTelemetry collector (otel/opentelemetry-collector-contrib)": collectors,
        "Jaeger (jaegertracing/all-in-one)": services_by_image(compose, JAEGER_IMAGES),
        "Prometheus (prom/prometheus)": services_by_image(compose, {"prom/prometheus"}),
        "Grafana (grafana/grafana)": services_by_image(compose, GRAFANA_IMAGES),
    }
    out.append(("docker-compose.yml: collector, Jaeger, Prometheus and Grafana services",
                [f"no {role} service" for role, found in roles.items() if not found]))

    grpc_ports: dict[str, int | None] = {}
    for name, svc in collectors.items():
        cpath = config_path(svc)
        host = container_to_host(svc, cpath, base) if cpath else None
        if host is None or not host.is_file():
            out.append((f"{name}: configuration", [f"{cpath} is not a file mounted into {name}"]))
            continue
        out.append((f"{rel(host)} ({name}): OTLP in, batch, OTLP to Jaeger", otel_errors(host, compose)))
        grpc_ports[name] = otel_grpc_port(load_yaml_mapping(host)[0] or {})

    errs = []
    binary = find_binary()
    for name, svc in shopmind_services(compose).items():
        env = service_env(svc)
        # Every SHOPMIND__* variable must be a real configuration key with a valid value: the
        # binary loads them exactly as the container would (skipped when it is not built).
        settings = {k: str(v) for k, v in env.items() if k.startswith("SHOPMIND__")}
        if binary is not None and settings:
            proc = subprocess.run([str(binary), "config"], capture_output=True, text=True,
                                  env={"PATH": os.environ.get("PATH", ""), **settings})
            if proc.returncode != 0:
                errs.append(f"services.{name}: the environment is not a valid shopmind configuration: "
                            f"{(proc.stderr or proc.stdout).strip()}")
        listen = env.get("SHOPMIND__METRICS__LISTEN", "0.0.0.0:9090")
        if not listen or host_port(listen)[0] in ("127.0.0.1", "localhost", "::1", "[::1]"):
            errs.append(f"services.{name}: SHOPMIND__METRICS__LISTEN {listen!r}: Prometheus cannot reach it "
                        "(listen on 0.0.0.0:9090)")
    out.append(("docker-compose.yml: shopmind services' configuration is valid and their metrics reachable", errs))

    target_labels = set(TARGET_LABELS)
    for name, svc in roles["Prometheus (prom/prometheus)"].items():
        cpath = config_path(svc)
        host = container_to_host(svc, cpath, base) if cpath else None
        if host is None or not host.is_file():
            out.append((f"{name}: configuration", [f"{cpath} is not a file mounted into {name}"]))
            continue
        out.append((f"{rel(host)} ({name}): scrapes every shopmind service", prometheus_errors(host, compose)))
        target_labels |= prometheus_target_labels(host)

    for name, svc in roles["Grafana (grafana/grafana)"].items():
        out += grafana_errors(name, svc, compose, base, catalogue, target_labels)
    return out


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def helm_errors(rendered: list[dict]) -> list[tuple[str, list[str]]]:
    out = []
    nats_path, redis_path = ROOT / "deploy/helm/nats-values.yaml", ROOT / "deploy/helm/redis-values.yaml"
    errs = []
    try:
        nats = yaml.safe_load(nats_path.read_text())
    except yaml.YAMLError as e:
        nats = None
        errs.append(f"not YAML: {e}")
    if not isinstance(nats, dict):
        errs.append("not a YAML mapping")
    else:
        if dig(nats, "config", "jetstream", "enabled") is not True:
            errs.append("config.jetstream.enabled must be true (shopmind runs on JetStream)")
        if dig(nats, "config", "jetstream", "fileStore", "enabled") is not True:
            errs.append("config.jetstream.fileStore.enabled must be true (streams are file-backed)")
        if dig(nats, "config", "monitor", "enabled") is not True:
            errs.append("config.monitor.enabled must be true (KEDA reads consumer lag from it)")
        port = dig(nats, "config", "monitor", "port")
        for so in (d for d in rendered if d.get("kind") == "ScaledObject"):
            for t in dig(so, "spec", "triggers") or []:
                ep = str(dig(t, "metadata", "natsServerMonitoringEndpoint") or "")
                if ep and not ep.endswith(f":{port}"):
                    errs.append(f"{kn(so)} reads {ep}, but the monitor port is {port}")
    out.append(("deploy/helm/nats-values.yaml", errs))
    errs = []
    try:
        redis = yaml.safe_load(redis_path.read_text())
    except yaml.YAMLError as e:
        redis = None
        errs.append(f"not YAML: {e}")
    if not isinstance(redis, dict):
        errs.append("not a YAML mapping")
    else:
        if redis.get("architecture") not in ("standalone", "replication"):
            errs.append("architecture must be standalone or replication")
        if dig(redis, "auth", "enabled") is not True or not dig(redis, "auth", "existingSecret"):
            errs.append("auth.enabled with auth.existingSecret required (no password in values)")
        if dig(redis, "master", "persistence", "enabled") is not True:
            errs.append("master.persistence.enabled must be true (features are state)")
        if dig(redis, "sentinel", "enabled"):
            errs.append("sentinel.enabled: shopmind does not speak Sentinel")
    out.append(("deploy/helm/redis-values.yaml", errs))
    return out


# ---------------------------------------------------------------------------------------------
# The Helm chart (deploy/helm/shopmind): `helm lint`, `helm template` validated like the kustomize
# output, the packaged chart, and agreement with the kustomize rendering each values file mirrors.

CHART = ROOT / "deploy/helm/shopmind"
RELEASE = "shopmind"
NAMESPACE = "shopmind"
# (what, values files of the chart, the kustomization it must agree with, expected image tag)
HELM_RENDERINGS = [
    ("defaults", [], "deploy/k8s/base", None),
    ("values-dev.yaml", ["values-dev.yaml"], "deploy/k8s/overlays/dev", "dev"),
    ("values-prod.yaml", ["values-prod.yaml"], "deploy/k8s/overlays/prod", None),
    # Every option switched on (TLS, OTel, Redis password, chart-made keys, trainer Deployment, no
    # KEDA): no kustomize counterpart, validated on its own.
    ("ci/all-options-values.yaml", ["ci/all-options-values.yaml"], None, None),
]

# What "the kustomize and Helm renderings agree" means (deploy/README.md, "Helm and kustomize
# agree"): the same objects, by kind and name, and for each one the same content, after these
# differences that come from the tools and not from the deployment:
#   - labels: only app.kubernetes.io/name and app.kubernetes.io/component are compared (each tool
#     adds its own: managed-by, part-of, instance, version, helm.sh/chart); selectors exactly;
#   - annotations: checksum/* (Helm's way to roll pods on a configuration change) is dropped;
#   - kustomize's generated ConfigMap name (shopmind-config-<hash>) is compared as shopmind-config;
#   - shopmind.toml is compared as parsed TOML (comments and layout may differ);
#   - lists whose items all have a `name` (containers, env, ports, volumes, mounts) in name order.
# Objects of one side only: the Namespace (kustomize renders it; a Helm release goes into an
# existing namespace), and Secrets the chart makes on request (backends.create, gateway.apiKeys.create).
AGREE_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/component")
DROPPED_ANNOTATION_PREFIXES = ("checksum/",)
KUSTOMIZE_ONLY = {("Namespace", NAMESPACE)}
HELM_ONLY_KINDS = {"Secret"}
GENERATED_NAME = re.compile(r"^(?P<base>.+)-[a-z0-9]{10}$")
ABSENT = "(absent)"


def helm_run(helm_bin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm_bin, *args], capture_output=True, text=True)


def helm_render(helm_bin: str, chart: Path, values: list[Path]) -> tuple[list[dict], str]:
    """`helm template` as release `shopmind` in namespace `shopmind`; returns (documents, error)."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["--values", str(v)]
    proc = helm_run(helm_bin, *args)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Use --debug")]
        return [], (" ".join(lines) or f"helm template exited {proc.returncode}")
    try:
        return [d for d in yaml.safe_load_all(proc.stdout) if d], ""
    except yaml.YAMLError as e:
        return [], f"rendered output is not YAML: {e}"


def helm_lint_errors(helm_bin: str, values: list[Path]) -> list[str]:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for v in values:
        args += ["--values", str(v)]
    proc = helm_run(helm_bin, *args)
    if proc.returncode == 0:
        return []
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines()]
    return [ln for ln in lines if ln.startswith(("[ERROR]", "[WARNING]", "Error"))] or [f"helm lint exited {proc.returncode}"]


def workspace_version() -> str:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def version_errors() -> list[str]:
    """One version everywhere (docs/RELEASING.md): the workspace's, the chart's version and
    appVersion, the image tag of the kustomize base and prod overlay, a CHANGELOG.md section, the
    tag scripts/image.sh builds."""
    version = workspace_version()
    errs = []
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text()) or {}
    for key in ("version", "appVersion"):
        if str(chart.get(key)) != version:
            errs.append(f"deploy/helm/shopmind/Chart.yaml {key} {chart.get(key)!r}: the workspace version is {version!r}")
    for kustomization in ("deploy/k8s/base/kustomization.yaml", "deploy/k8s/overlays/prod/kustomization.yaml"):
        images = (yaml.safe_load((ROOT / kustomization).read_text()) or {}).get("images") or []
        for image in images:
            if image.get("name") == "shopmind" and str(image.get("newTag")) != version:
                errs.append(f"{kustomization}: image tag {image.get('newTag')!r}, the workspace version is {version!r}")
    changelog = ROOT / "CHANGELOG.md"
    if not changelog.is_file() or not re.search(rf"^## \[{re.escape(version)}\]", changelog.read_text(), re.M):
        errs.append(f"CHANGELOG.md: no `## [{version}]` section")
    proc = subprocess.run(["bash", str(ROOT / "scripts/image.sh"), "--dry-run"], capture_output=True, text=True)
    if proc.returncode != 0:
        errs.append(f"scripts/image.sh --dry-run failed: {(proc.stderr or proc.stdout).strip()}")
    elif f"version: {version}\n" not in proc.stdout or f":{version} " not in proc.stdout:
        errs.append(f"scripts/image.sh --dry-run does not tag {version}: {proc.stdout.strip()}")
    return errs


def normalize_metadata(meta: dict) -> dict:
    out = dict(meta)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k in AGREE_LABELS}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(DROPPED_ANNOTATION_PREFIXES)}
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            out[key] = value
        else:
            out.pop(key, None)
    return out


def normalize(node, renames: dict[str, str]):
    """The form in which two renderings are compared (see AGREE_LABELS)."""
    if isinstance(node, dict):
        return {k: normalize(normalize_metadata(v) if k == "metadata" and isinstance(v, dict) else v, renames)
                for k, v in node.items()}
    if isinstance(node, list):
        items = [normalize(x, renames) for x in node]
        if items and all(isinstance(x, dict) and "name" in x for x in items):
            items.sort(key=lambda x: str(x["name"]))
        return items
    if isinstance(node, str):
        return renames.get(node, node)
    return node


def comparable(doc: dict, renames: dict[str, str]) -> dict:
    out = normalize(doc, renames)
    toml_text = (out.get("data") or {}).get("shopmind.toml") if out.get("kind") == "ConfigMap" else None
    if isinstance(toml_text, str):
        try:
            out["data"]["shopmind.toml"] = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            out["data"]["shopmind.toml"] = f"(not TOML: {e})"
    return out


def differences(a, b, path: str = ""):
    """(path, a's value, b's value) for each place where two normalized objects differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            yield from differences(a.get(k, ABSENT), b.get(k, ABSENT), p)
    elif isinstance(a, list) and isinstance(b, list) and all(
            isinstance(x, dict) and "name" in x for x in a + b) and (a or b):
        by_a, by_b = {str(x["name"]): x for x in a}, {str(x["name"]): x for x in b}
        for name in sorted(set(by_a) | set(by_b)):
            yield from differences(by_a.get(name, ABSENT), by_b.get(name, ABSENT), f"{path}[{name}]")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b


def short(value) -> str:
    text = value if value == ABSENT else json.dumps(value, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


def agreement_errors(kustomize: list[dict], helm: list[dict]) -> list[str]:
    """Where the Helm rendering differs from the kustomize one (see AGREE_LABELS for what counts)."""
    helm_keys = {(d.get("kind"), dig(d, "metadata", "name")) for d in helm}
    renames = {}
    for d in kustomize:
        m = GENERATED_NAME.match(str(dig(d, "metadata", "name")))
        if d.get("kind") == "ConfigMap" and m and ("ConfigMap", m["base"]) in helm_keys:
            renames[m.string] = m["base"]
    k = {(d.get("kind"), renames.get(dig(d, "metadata", "name"), dig(d, "metadata", "name"))): comparable(d, renames)
         for d in kustomize}
    h = {(d.get("kind"), dig(d, "metadata", "name")): comparable(d, {}) for d in helm}
    errs = []
    for kind, name in sorted(set(k) - set(h) - KUSTOMIZE_ONLY, key=str):
        errs.append(f"{kind}/{name}: rendered by kustomize, not by the chart")
    for kind, name in sorted(set(h) - set(k), key=str):
        if kind not in HELM_ONLY_KINDS:
            errs.append(f"{kind}/{name}: rendered by the chart, not by kustomize")
    for key in sorted(set(k) & set(h), key=str):
        for path, a, b in differences(k[key], h[key]):
            errs.append(f"{key[0]}/{key[1]}: {path}: kustomize {short(a)}, helm {short(b)}")
    return errs


def helm_package_errors(helm_bin: str, expected: list[dict]) -> list[str]:
    """The chart packages, and the package renders what the chart's folder renders."""
    with tempfile.TemporaryDirectory() as out:
        proc = helm_run(helm_bin, "package", str(CHART), "--destination", out)
        if proc.returncode != 0:
            return [f"helm package: {proc.stderr.strip()}"]
        (tgz,) = Path(out).glob("*.tgz")
        docs, err = helm_render(helm_bin, tgz, [])
    if err:
        return [f"{tgz.name}: {err}"]
    return [] if docs == expected else [f"{tgz.name} renders differently from {rel(CHART)} (a file left out by .helmignore?)"]


def helm_checks(helm_bin: str, kustomize: dict[str, list[dict]], report: Report, binary: Path | None) -> list[dict]:
    """Lints and renders the chart with each values file, validates what it renders like the
    kustomize output, and compares it with the kustomization it mirrors. Returns the rendering
    of the defaults."""
    report.check("one version: Cargo.toml workspace, Chart.yaml, kustomize image tags, CHANGELOG.md, scripts/image.sh",
                 version_errors())
    defaults: list[dict] = []
    for what, values, overlay, tag in HELM_RENDERINGS:
        files = [CHART / v for v in values]
        report.check(f"helm lint --strict ({what})", helm_lint_errors(helm_bin, files))
        docs, err = helm_render(helm_bin, CHART, files)
        report.check(f"helm template ({what}): renders", [err] if err else [])
        if err:
            continue
        if not values:
            defaults = docs
        check_documents(docs, f"helm {what}", report, tag)
        if binary:
            report.check(f"helm {what}: shopmind.toml, each container's flags and SHOPMIND__ environment load with "
                         f"{binary.relative_to(ROOT)}", config_errors(docs, binary))
        if overlay:
            if overlay in kustomize:
                report.check(f"helm {what} agrees with {overlay}", agreement_errors(kustomize[overlay], docs))
            else:
                report.fail(f"helm {what} agrees with {overlay}", [f"{overlay} did not render"])
    if defaults:
        report.check("helm package: the packaged chart renders as its folder does", helm_package_errors(helm_bin, defaults))
    return defaults


def helm_version(helm_bin: str) -> str:
    return helm_run(helm_bin, "version", "--short").stdout.strip()


# ---------------------------------------------------------------------------------------------
# The image: Dockerfile, .dockerignore, the dependency recipe. No Docker engine is needed.

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE_REQUIRED = (".git", "target", ".cache")
# An exact version in the tag: rust:1.95.0-slim-trixie, debian:13.4-slim, python:3.12.12-slim-trixie.
VERSION_TAG = re.compile(r":[^:/@]*\b\d+\.\d+(\.\d+)?\b[^:/@]*$")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        op, _, rest = current.partition(" ")
        out.append((op.upper(), rest.strip()))
        current = ""
    return out


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[dict]]:
    """The ARGs before the first FROM, and each stage: name, image as written and resolved, instructions."""
    args: dict[str, str] = {}
    stages: list[dict] = []
    for op, rest in dockerfile_instructions(text):
        if op == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            image = parts[0]
            resolved = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), image)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "image": image, "base": resolved, "ops": []})
        elif stages:
            stages[-1]["ops"].append((op, rest))
        elif op == "ARG":
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip().strip('"')
    return args, stages


def copies_context(stage: dict) -> list[str]:
    """COPY/ADD instructions of a stage that read the build context (not another stage)."""
    return [f"{op} {rest}" for op, rest in stage["ops"] if op in ("COPY", "ADD") and "--from=" not in rest]


def dockerfile_errors(path: Path) -> tuple[list[str], dict[str, str]]:
    """The rules of the Dockerfile; returns (errors, the runtime stage's ENV)."""
    _, stages = dockerfile_stages(path.read_text())
    if not stages:
        return ["no FROM"], {}
    errs: list[str] = []
    by_name = {s["name"]: s for s in stages if s["name"]}
    for s in stages:
        base = s["base"]
        if base in by_name:
            continue
        if "$" in base:
            errs.append(f"FROM {s['image']}: no default for it (an ARG before the first FROM)")
        elif "@sha256:" not in base and (not VERSION_TAG.search(base) or base.endswith(":latest")):
            errs.append(f"FROM {s['image']} = {base}: not pinned (an exact version tag or an @sha256 digest)")

    def ancestry(stage: dict) -> list[dict]:
        chain = [stage]
        while chain[-1]["base"] in by_name and len(chain) <= len(stages):
            chain.append(by_name[chain[-1]["base"]])
        return chain

    builds = [s for s in stages if any(op == "RUN" and "cargo build" in rest for op, rest in s["ops"])]
    if not builds:
        errs.append("no stage runs cargo build")
    else:
        deps = builds[0]
        where = f"the dependency stage ({deps['name'] or deps['image']}, the first to run cargo build)"
        for stage in ancestry(deps):
            for c in copies_context(stage):
                errs.append(f"{where} copies from the build context: {c!r}; only the recipe may reach it "
                            "(COPY --from=<planner stage> of scripts/cargo-recipe.py's output)")
        sources = [re.search(r"--from=(\S+)", rest)[1] for op, rest in deps["ops"] if op == "COPY" and "--from=" in rest]
        for src in sources:
            planner = by_name.get(src)
            if planner is None or not any(op == "RUN" and "cargo-recipe.py" in rest for op, rest in planner["ops"]):
                errs.append(f"{where} copies from {src!r}, which does not run scripts/cargo-recipe.py")
        if not sources:
            errs.append(f"{where} copies no recipe (COPY --from=<planner stage>)")
        later = [s for s in builds[1:] if deps in ancestry(s)]
        if not later:
            errs.append(f"no stage builds on {where} with the source (FROM it, COPY the source, cargo build)")
    runtime = stages[-1]
    users = [rest for op, rest in runtime["ops"] if op == "USER"]
    user = users[-1].split(":")[0] if users else ""
    if user != str(RUN_AS_USER):
        errs.append(f"the runtime stage must end as USER {RUN_AS_USER}:{RUN_AS_USER} (numeric, non-root; the "
                    f"manifests run as {RUN_AS_USER}), got {users[-1] if users else 'no USER (root)'}")
    for c in copies_context(runtime):
        errs.append(f"the runtime stage copies from the build context: {c!r} (only from the build stages)")
    if not any(op == "ENTRYPOINT" and "/usr/local/bin/shopmind" in rest for op, rest in runtime["ops"]):
        errs.append("the runtime stage's ENTRYPOINT must be /usr/local/bin/shopmind")
    setup = re.search(r'^ORT_VERSION="([^"]+)"', (ROOT / "scripts/setup.sh").read_text(), re.M)
    ort = [rest.partition("=")[2] for s in stages for op, rest in s["ops"] if op == "ARG" and rest.startswith("ORT_VERSION=")]
    if not ort or not setup or ort[0] != setup[1]:
        errs.append(f"ARG ORT_VERSION {ort[0] if ort else '(none)'}: scripts/setup.sh fetches ONNX Runtime "
                    f"{setup[1] if setup else '(unknown)'}; keep them equal")
    env: dict[str, str] = {}
    for op, rest in runtime["ops"]:
        if op == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return errs, env


def dockerignore_errors(path: Path) -> list[str]:
    if not path.is_file():
        return [f"{rel(path)} is missing: the build context would carry {', '.join(DOCKERIGNORE_REQUIRED)}"]
    entries = {ln.strip().lstrip("/").rstrip("/") for ln in path.read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    return [f"{rel(path)}: {e} is not excluded" for e in DOCKERIGNORE_REQUIRED if e not in entries]


def load_recipe_module():
    spec = importlib.util.spec_from_file_location("cargo_recipe", ROOT / "scripts/cargo-recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cargo_targets(workspace: Path) -> dict[str, set]:
    """{package: {(target, kind)}} of the lib, bin and build-script targets, from cargo metadata."""
    proc = subprocess.run(["cargo", "metadata", "--no-deps", "--locked", "--offline", "--format-version", "1"],
                          cwd=workspace, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    wanted = {"lib", "rlib", "proc-macro", "bin", "custom-build"}
    return {p["name"]: {(t["name"], k) for t in p["targets"] for k in t["kind"] if k in wanted}
            for p in json.loads(proc.stdout)["packages"]}


def recipe_errors() -> list[str]:
    """scripts/cargo-recipe.py writes manifests, the lock file and stubs only, and cargo sees in the
    recipe the same packages with the same lib, bin and build-script targets as in the workspace."""
    module = load_recipe_module()
    errs = []
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "recipe"
        files = module.write_recipe(ROOT, dest)
        for f in files:
            text = (dest / f).read_text()
            if f.name in ("Cargo.toml", "Cargo.lock"):
                if text != (ROOT / f).read_text():
                    errs.append(f"recipe {f}: differs from the workspace's")
            elif text not in (module.LIB_STUB, module.MAIN_STUB):
                errs.append(f"recipe {f}: not a stub: source reached the dependency recipe")
        if shutil.which("cargo") is None:
            print("  skip  the recipe's targets against the workspace's: cargo is not on PATH")
            return errs
        try:
            real, recipe = cargo_targets(ROOT), cargo_targets(dest)
        except RuntimeError as e:
            return errs + [f"cargo metadata: {e}"]
    for name in sorted(set(real) | set(recipe)):
        if real.get(name) != recipe.get(name):
            errs.append(f"package {name}: targets {sorted(real.get(name) or [])} in the workspace, "
                        f"{sorted(recipe.get(name) or [])} in the recipe")
    return errs


def image_checks(report: Report, binary: Path | None) -> None:
    errs, env = dockerfile_errors(DOCKERFILE)
    report.check("Dockerfile: pinned bases, a dependency stage built from the recipe alone, non-root runtime, "
                 "ONNX Runtime as scripts/setup.sh", errs)
    report.check(".dockerignore: nothing built or fetched in the build context", dockerignore_errors(ROOT / ".dockerignore"))
    report.check("scripts/cargo-recipe.py: manifests, Cargo.lock and stubs, the workspace's targets", recipe_errors())
    settings = {k: v for k, v in env.items() if k.startswith("SHOPMIND__")}
    if binary is not None:
        proc = subprocess.run([str(binary), "config"], capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", ""), **settings})
        report.check(f"Dockerfile: the image's SHOPMIND__ environment loads with {binary.relative_to(ROOT)}",
                     [] if proc.returncode == 0 else [(proc.stderr or proc.stdout).strip()])
    else:
        print("  skip  the image's SHOPMIND__ environment: target/debug/shopmind is not built (cargo build)")


# ---------------------------------------------------------------------------------------------
# The run and the self-test


def validate_all(kubectl: str, helm_bin: str) -> int:
    report = Report()
    print(f"kubectl kustomize ({kubectl_version(kubectl)}), helm {helm_version(helm_bin)}, kubernetes-validate "
          f"{kv.__version__} against Kubernetes {KUBE_VERSION} (strict), jsonschema {jsonschema_version()}")
    binary = find_binary()
    rendered: dict[str, list[dict]] = {}
    for overlay in OVERLAYS:
        print(f"{overlay}:")
        docs, err = render(kubectl, ROOT / overlay)
        report.check(f"{overlay}: renders", [err] if err else [])
        if err:
            continue
        check_documents(docs, overlay, report, EXPECTED_TAG.get(overlay))
        rendered[overlay] = docs
        if binary:
            report.check(f"{overlay}: shopmind.toml and each container's flags load with {binary.relative_to(ROOT)}",
                         config_errors(docs, binary))
        else:
            print(f"  skip  {overlay}: shopmind.toml not loaded: target/debug/shopmind is not built (cargo build)")
    print(f"{rel(CHART)} (Helm chart):")
    helm_defaults = helm_checks(helm_bin, rendered, report, binary)
    print("docker-compose.yml:")
    report.check(f"docker-compose.yml against the Compose Specification ({SCHEMA_SOURCE})",
                 compose_errors(ROOT / "docker-compose.yml"))
    print("docker-compose.yml observability (deploy/compose/):")
    for what, errs in observability_checks(ROOT / "docker-compose.yml"):
        report.check(what, errs)
    print("deploy/helm values of NATS and Redis:")
    for what, errs in helm_errors(rendered.get("deploy/k8s/overlays/prod", []) + helm_defaults):
        report.check(what, errs)
    print("Dockerfile and the image:")
    image_checks(report, binary)
    print(f"validate-deploy: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


def self_test(kubectl: str, helm_bin: str) -> int:
    """Each broken input must be rejected, with its expected message; the good one accepted."""
    cases_dir = ROOT / "deploy/tests/self-test"
    results = Report()
    print(f"self-test: broken inputs from {cases_dir.relative_to(ROOT)} must be rejected")

    # The real prod rendering is the known-good context the broken documents are placed into, so
    # that a broken document is judged as it would be in the overlay.
    good, err = render(kubectl, ROOT / "deploy/k8s/overlays/prod")
    if err:
        print(f"  FAIL  cannot render overlays/prod for the self-test: {err}")
        return 1
    quiet = Report(quiet=True)
    check_documents(good, "prod", quiet)
    results.check("the good input (overlays/prod) is accepted", [] if quiet.failed == 0 else [f"{quiet.failed} documents rejected"])

    # The chart's rendering of the defaults, and the base it agrees with, for the agree-* cases.
    helm_good, err = helm_render(helm_bin, CHART, [])
    base, base_err = render(kubectl, ROOT / "deploy/k8s/base")
    results.check("the good chart (defaults) agrees with deploy/k8s/base",
                  [err or base_err] if err or base_err else agreement_errors(base, helm_good))
    context = {"helm": helm_bin, "helm_good": helm_good, "base": base}

    for case in sorted([*cases_dir.glob("*.yaml"), *cases_dir.glob("*.json"), *cases_dir.glob("*.Dockerfile")]):
        if case.name.startswith("config-") and find_binary() is None:
            print(f"  skip  {case.name}: target/debug/shopmind is not built (cargo build)")
            continue
        text = case.read_text()
        if case.suffix == ".json":  # JSON has no comments: the expectation is a top-level key
            m = re.search(r'^\s*"x-self-test-expect":\s*"((?:[^"\\]|\\.)+)"', text, re.M)
            expected = json.loads(f'"{m.group(1)}"') if m else None
        else:
            m = re.search(r"^# expect: (.+)$", text, re.M)
            expected = m.group(1).strip() if m else None
        if not expected:
            results.fail(case.name, ["no '# expect: <message>' line (JSON: an \"x-self-test-expect\" key)"])
            continue
        got = errors_for_case(case, text, good, context)
        hit = [e for e in got if expected in e]
        if hit:
            results.ok(f"{case.name}: rejected: {hit[0][:140]}")
        elif got:
            results.fail(case.name, [f"rejected, but not with {expected!r}:"] + got[:5])
        else:
            results.fail(case.name, [f"accepted; expected a rejection with {expected!r}"])
    for case in sorted(p for p in cases_dir.iterdir() if p.is_dir()):
        expected = (case / "EXPECT").read_text().strip()
        _, err = render(kubectl, case)
        if err and expected in err:
            results.ok(f"{case.name}/: kustomize refused it: {err.splitlines()[0][:140]}")
        else:
            results.fail(f"{case.name}/", [f"expected a render error with {expected!r}, got {err or 'a rendering'}"])
    print(f"validate-deploy self-test: {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


def errors_for_case(case: Path, text: str, good: list[dict], context: dict) -> list[str]:
    if case.name.startswith("compose-"):
        return compose_errors(case)
    if case.suffix == ".Dockerfile":
        return dockerfile_errors(case)[0]
    # A values file for the chart: helm must refuse it (values.schema.json, the templates' checks),
    # or what it renders must fail the checks of every rendering.
    if case.name.startswith("helm-values-"):
        docs, err = helm_render(context["helm"], CHART, [case])
        if err:
            return [err]
        index = index_of(docs)
        return [f"{kn(d)}: {e}" for d in docs for e in document_errors(d, index)]
    # A document in place of the chart's object of the same kind and name: the agreement with
    # deploy/k8s/base must name the difference.
    if case.name.startswith("agree-"):
        broken = [d for d in yaml.safe_load_all(text) if d]
        keys = {(d.get("kind"), dig(d, "metadata", "name")) for d in broken}
        helm_docs = [d for d in context["helm_good"] if (d.get("kind"), dig(d, "metadata", "name")) not in keys] + broken
        return agreement_errors(context["base"], helm_docs)
    # The observability configuration is judged against the real docker-compose.yml.
    if case.name.startswith(("dashboard-", "prometheus-", "otelcol-")):
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text()) or {}
        if case.name.startswith("prometheus-"):
            return prometheus_errors(case, compose)
        if case.name.startswith("otelcol-"):
            return otel_errors(case, compose)
        ds_dir = ROOT / "deploy/compose/grafana/provisioning/datasources"
        _, uids = grafana_datasource_errors(sorted(ds_dir.glob("*.y*ml")), compose)
        return dashboard_errors(case, uids, metric_catalogue(), TARGET_LABELS | {"service"})
    broken = [d for d in yaml.safe_load_all(text) if d]
    # Replace the good object of the same kind and name (or add the broken one).
    keys = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in broken}
    docs = [copy.deepcopy(d) for d in good if (d.get("kind"), d["metadata"]["name"]) not in keys] + broken
    index = index_of(docs)
    errs = []
    for d in broken:
        e = schema_errors(d)
        errs += e or (workload_errors(d, index) + reference_errors(d, index))
    if case.name.startswith("config-"):
        errs += config_errors(docs, find_binary())
    return errs


def kubectl_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    return ", ".join(line.strip() for line in out.splitlines() if line.strip())


def jsonschema_version() -> str:
    from importlib.metadata import version
    return version("jsonschema")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", required=True, help="kubectl with built-in kustomize")
    parser.add_argument("--helm", required=True, help="helm 3")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-test", action="store_true", help="only check that broken inputs are rejected")
    mode.add_argument("--all", action="store_true", help="the self-test, then the validation (CI)")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.kubectl, args.helm)
    if args.all:
        failed_self_test = self_test(args.kubectl, args.helm)
        return validate_all(args.kubectl, args.helm) or failed_self_test
    return validate_all(args.kubectl, args.helm)


if __name__ == "__main__":
    sys.exit(main())
