#!/usr/bin/env python3
"""Checks shopmind's deployment files without a cluster; run through scripts/validate-deploy.sh,
which sets up the tools (a venv with kubernetes-validate, kubectl's built-in kustomize).

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
  6. docker-compose.yml against the Compose Specification JSON schema (vendored, see SCHEMA_SOURCE);
  7. deploy/helm/*-values.yaml parse, and agree with the manifests (monitor port, secret names).

`--self-test` feeds deliberately broken inputs (deploy/tests/self-test/) through the same checks
and fails unless each one is rejected with the expected message, and a good one is accepted;
`--all` runs the self-test, then the validation (what CI runs).

Exit status: 0 when everything passed, 1 otherwise. Each part ends with a line
`validate-deploy: N passed, M failed` (`validate-deploy self-test: ...` for the self-test).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
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

SUBCOMMANDS = {"gateway", "ingest", "feature", "inference", "notification", "trainer", "train"}
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
        if "@sha256:" in image:  # pinned by digest
            repo, _, tag = image.partition("@")
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


def check_documents(docs: list[dict], source: str, report: Report, expected_tag: str | None = None) -> None:
    index: dict[str, dict[str, dict]] = {}
    for d in docs:
        if isinstance(d, dict):
            index.setdefault(str(d.get("kind")), {})[str((d.get("metadata") or {}).get("name"))] = d
    for d in docs:
        errs = schema_errors(d)
        if not errs:
            errs = workload_errors(d, index) + reference_errors(d, index)
            if expected_tag:
                for _, c in containers_of(d):
                    if not str(c.get("image", "")).endswith(":" + expected_tag):
                        errs.append(f"container {c.get('name')}: image {c.get('image')!r}, expected tag {expected_tag}")
        report.check(f"{source}: {kn(d)}", errs)


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
    container passes after its subcommand (`shopmind <flags> config` parses and validates them)."""
    cms = [d for d in docs if d.get("kind") == "ConfigMap" and "shopmind.toml" in (d.get("data") or {})]
    if not cms:
        return ["no ConfigMap with a shopmind.toml key"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPMIND")}
    # What the pods get from the Secret, so the whole configuration validates as it will there.
    env["SHOPMIND__NATS__URL"] = "nats://nats.nats.svc.cluster.local:4222"
    env["SHOPMIND__REDIS__URL"] = "redis://:password@redis-master.redis.svc.cluster.local:6379/"
    errs = []

    def run(args: list[str], toml: str) -> str:
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(toml)
            f.flush()
            proc = subprocess.run([str(binary), "--config", f.name, *args, "config"],
                                  capture_output=True, text=True, env=env)
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
                err = run(list(args[1:]), toml)
                if err:
                    errs.append(f"{kn(d)} container {c.get('name')}: flags {args[1:]} rejected by {binary.name}: {err}")
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
    return errs


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
# The run and the self-test


def validate_all(kubectl: str) -> int:
    report = Report()
    print(f"kubectl kustomize ({kubectl_version(kubectl)}), kubernetes-validate "
          f"{kv.__version__} against Kubernetes {KUBE_VERSION} (strict), jsonschema {jsonschema_version()}")
    binary = find_binary()
    rendered_prod: list[dict] = []
    for overlay in OVERLAYS:
        print(f"{overlay}:")
        docs, err = render(kubectl, ROOT / overlay)
        report.check(f"{overlay}: renders", [err] if err else [])
        if err:
            continue
        check_documents(docs, overlay, report, EXPECTED_TAG.get(overlay))
        if overlay.endswith("prod"):
            rendered_prod = docs
        if binary:
            report.check(f"{overlay}: shopmind.toml and each container's flags load with {binary.relative_to(ROOT)}",
                         config_errors(docs, binary))
        else:
            print(f"  skip  {overlay}: shopmind.toml not loaded: target/debug/shopmind is not built (cargo build)")
    print("docker-compose.yml:")
    report.check(f"docker-compose.yml against the Compose Specification ({SCHEMA_SOURCE})",
                 compose_errors(ROOT / "docker-compose.yml"))
    print("deploy/helm:")
    for what, errs in helm_errors(rendered_prod):
        report.check(what, errs)
    print(f"validate-deploy: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


def self_test(kubectl: str) -> int:
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

    for case in sorted(cases_dir.glob("*.yaml")):
        if case.name.startswith("config-") and find_binary() is None:
            print(f"  skip  {case.name}: target/debug/shopmind is not built (cargo build)")
            continue
        text = case.read_text()
        m = re.search(r"^# expect: (.+)$", text, re.M)
        if not m:
            results.fail(case.name, ["no '# expect: <message>' line"])
            continue
        expected = m.group(1).strip()
        got = errors_for_case(case, text, good, kubectl)
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


def errors_for_case(case: Path, text: str, good: list[dict], kubectl: str) -> list[str]:
    if case.name.startswith("compose-"):
        return compose_errors(case)
    broken = [d for d in yaml.safe_load_all(text) if d]
    # Replace the good object of the same kind and name (or add the broken one).
    keys = {(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in broken}
    docs = [copy.deepcopy(d) for d in good if (d.get("kind"), d["metadata"]["name"]) not in keys] + broken
    index: dict[str, dict[str, dict]] = {}
    for d in docs:
        index.setdefault(str(d.get("kind")), {})[str((d.get("metadata") or {}).get("name"))] = d
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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--self-test", action="store_true", help="only check that broken inputs are rejected")
    mode.add_argument("--all", action="store_true", help="the self-test, then the validation (CI)")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.kubectl)
    if args.all:
        failed_self_test = self_test(args.kubectl)
        return validate_all(args.kubectl) or failed_self_test
    return validate_all(args.kubectl)


if __name__ == "__main__":
    sys.exit(main())
