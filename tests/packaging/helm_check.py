"""Checks of the Helm chart (helm/arno), without the helm binary or a cluster.

Renders the chart with its default values and with a production values file (helm-python-sdk,
Helm's own Go library), lints it strictly, validates every rendered manifest with
`kubernetes-validate --strict` for the oldest and the newest Kubernetes the chart supports, and
asserts what the chart promises: the restricted security context, the probes, existingSecret,
the registry override, the migration hook, and the refusals.

Usage: python helm_check.py CHART_DIR WORK_DIR   (exit status 1 and a list of failures)
"""

import os
import subprocess
import sys
import tomllib

import helm_python as helm
import yaml

KUBE_VERSIONS = ["1.25.0", "1.37.0"]
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def render(chart, values, name="arno"):
    manifests = chart.render(values, name=name, namespace="design", is_install=True)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return manifests, docs


def find(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    return found[0] if found else None


def refused(chart, values, expected):
    try:
        chart.render(values, name="arno", namespace="design", is_install=True)
    except helm.HelmError as e:
        check(expected in str(e), f"refusal says {expected!r}; got: {e}")
        return
    failures.append(f"values {values} were accepted; expected a refusal saying {expected!r}")


def schema_refuses(chart, values, what):
    try:
        chart.validate_schema(values)
    except helm.HelmValuesError:
        return
    failures.append(f"values.schema.json accepted {what}")


def restricted(pod_spec, where):
    """The 'restricted' Pod Security Standard, as the admission controller checks it."""
    psc = pod_spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
    check(psc.get("runAsUser") == 65532, f"{where}: pod runAsUser 65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp RuntimeDefault")
    check(pod_spec.get("automountServiceAccountToken") is False, f"{where}: no service account token")
    for c in pod_spec["containers"] + pod_spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}: allowPrivilegeEscalation false")
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}/{c['name']}: read-only root filesystem")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}/{c['name']}: drop ALL")
        check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == 65532, f"{where}/{c['name']}: non-root 65532")
        check(sc.get("privileged") is False, f"{where}/{c['name']}: not privileged")
        check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}/{c['name']}: seccomp")
    for v in pod_spec.get("volumes", []):
        check("hostPath" not in v, f"{where}: no hostPath volume ({v['name']})")


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def validate_with_kubernetes_validate(docs, work, label):
    """Every rendered object through the kubernetes-validate CLI, strict, for each version."""
    core = [d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
    path = os.path.join(work, f"{label}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    tool = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    for version in KUBE_VERSIONS:
        out = subprocess.run([tool, "--strict", "-k", version, path], capture_output=True, text=True)
        check(out.returncode == 0, f"kubernetes-validate --strict -k {version} ({label}):\n{out.stdout}{out.stderr}")
        passed = out.stdout.count(" passed for resource ")
        check(passed == len(core), f"kubernetes-validate ({label}, {version}) passed {passed} of {len(core)}")


def lint(chart_dir, values, label):
    for version in KUBE_VERSIONS:
        report = helm.lint(chart_dir, values, strict=True, namespace="design", kube_version=f"v{version}")
        bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        check(not bad, f"helm lint --strict ({label}, {version}): {bad}")


def main():
    chart_dir, work = sys.argv[1], sys.argv[2]
    chart = helm.Chart.load(chart_dir)
    with open(os.path.join(chart_dir, "ci", "production-values.yaml")) as f:
        production = yaml.safe_load(f)

    # --- default values: one replica on SQLite and the data volume ---------------------------
    chart.validate_schema(None)
    lint(chart_dir, None, "default")
    manifests, docs = render(chart, None)
    validate_with_kubernetes_validate(docs, work, "default")
    kinds = sorted(d["kind"] for d in docs)
    check(kinds == sorted(["ConfigMap", "Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "Service",
                           "ServiceAccount"]), f"default objects: {kinds}")
    dep = find(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    arno = pod["containers"][0]
    restricted(pod, "Deployment")
    check(dep["spec"]["replicas"] == 1, "default: one replica")
    check(dep["spec"]["strategy"]["type"] == "Recreate", "SQLite: Recreate, never two pods on one database")
    check(arno["image"] == f"arno:{chart.metadata['appVersion']}", f"default image: {arno['image']}")
    check(arno["livenessProbe"]["httpGet"]["path"] == "/health", "liveness probe on /health")
    check(arno["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness probe on /ready")
    check(arno["startupProbe"]["httpGet"]["path"] == "/health", "startup probe on /health")
    check({p["name"]: p["containerPort"] for p in arno["ports"]} == {"http": 8080, "metrics": 9464}, "ports")
    mounts = {m["mountPath"]: m for m in arno["volumeMounts"]}
    check("/var/lib/arno" in mounts and "/tmp" in mounts, "data and /tmp are writable volumes")
    check("/etc/arno/secrets" not in mounts, "no secret mounted without existingSecret")
    check(not any(k.endswith("_FILE") for k in env_of(arno)), "no secret files without existingSecret")
    pvc = find(docs, "PersistentVolumeClaim")
    check(pvc["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", "the data claim outlives uninstall")
    env = env_of(arno)
    check(env.get("ARNO_DATA_DIR") == "/var/lib/arno" and env.get("ARNO_LISTEN") == "0.0.0.0:8080"
          and env.get("ARNO_METRICS_LISTEN") == "0.0.0.0:9464", f"listeners and data dir in the pod: {env}")
    config = tomllib.loads(find(docs, "ConfigMap")["data"]["arno.toml"])
    check("storage_url" not in config, "default: objects on the data volume")
    check(find(docs, "Job") is None, "no migration Job with SQLite (the single replica migrates at start)")
    check("/setup" in manifests["arno/templates/NOTES.txt"], "NOTES tell where the first sign-in happens")

    # --- production values: PostgreSQL, S3, three replicas, private registry ----------------
    chart.validate_schema(production)
    lint(chart_dir, production, "production")
    _, docs = render(chart, production)
    validate_with_kubernetes_validate(docs, work, "production")
    kinds = sorted(d["kind"] for d in docs)
    check(kinds == sorted(["ConfigMap", "Deployment", "Ingress", "Job", "PodDisruptionBudget", "Service",
                           "ServiceAccount", "ServiceMonitor"]), f"production objects: {kinds}")
    dep = find(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    arno = pod["containers"][0]
    restricted(pod, "Deployment (production)")
    check(dep["spec"]["replicas"] == 3, "three replicas")
    check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rolling update keeps capacity")
    check(arno["image"] == "registry.internal:5000/platform/arno:0.1.0", f"registry override: {arno['image']}")
    check(pod["imagePullSecrets"] == [{"name": "registry-internal"}], "image pull secret")
    env = env_of(arno)
    check(env.get("ARNO_DATABASE_URL_FILE") == "/etc/arno/secrets/database-url", f"database URL from the Secret: {env}")
    check(env.get("ARNO_S3_ACCESS_KEY_ID_FILE") == "/etc/arno/secrets/s3-access-key-id", "S3 key id from the Secret")
    check(env.get("ARNO_S3_SECRET_ACCESS_KEY_FILE") == "/etc/arno/secrets/s3-secret-access-key", "S3 secret")
    check(env.get("ARNO_SECRET_KEY_FILE") == "/etc/arno/secrets/instance-key", "instance key from the Secret")
    check(not any(e.get("value", "").startswith("postgres") for e in arno["env"]), "no secret value inline")
    secret_volume = [v for v in pod["volumes"] if "secret" in v]
    check(len(secret_volume) == 1 and secret_volume[0]["secret"]["secretName"] == "arno-secrets", "existingSecret mounted")
    check(any(v["name"] == "data" and "emptyDir" in v for v in pod["volumes"]), "no claim when persistence is off")
    config = tomllib.loads(find(docs, "ConfigMap")["data"]["arno.toml"])
    check(config["storage_url"] == "s3://arno-objects/prod" and config["s3"]["endpoint"] == "https://minio.internal:9000",
          f"S3 settings: {config}")
    check(config["oidc"][0]["client_secret_file"] == "/etc/arno/secrets/oidc-corp", "extraToml appended")
    check(config["public_url"] == "https://arno.example.com", "public URL")
    job = find(docs, "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    check(set(hooks) == {"pre-install", "pre-upgrade"}, f"migration hook: {hooks}")
    jpod = job["spec"]["template"]["spec"]
    restricted(jpod, "migration Job")
    check(jpod["containers"][0]["args"] == ["migrate"], "the Job runs arno migrate")
    check(jpod["containers"][0]["image"] == arno["image"], "the Job runs the same image")
    check(env_of(jpod["containers"][0]).get("ARNO_DATABASE_URL_FILE") == "/etc/arno/secrets/database-url",
          "the Job reads the database URL from the Secret")
    sm = find(docs, "ServiceMonitor")
    check(sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["path"] == "/metrics",
          "ServiceMonitor scrapes the metrics port")
    check(sm["metadata"]["labels"].get("release") == "prometheus", "ServiceMonitor labels")
    check(sm["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "ServiceMonitor selector")
    svc = find(docs, "Service")
    check({p["name"] for p in svc["spec"]["ports"]} == {"http", "metrics"}, "service ports")
    ing = find(docs, "Ingress")
    check(ing["spec"]["tls"][0]["secretName"] == "arno-tls", "ingress TLS")
    check(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"] == "http", "ingress port")

    # PostgreSQL but a ReadWriteOnce data volume: still one pod at a time.
    _, docs = render(chart, {"database": {"external": True}, "existingSecret": "s",
                             "secretKeys": {"databaseUrl": "database-url"}})
    check(find(docs, "Deployment")["spec"]["strategy"]["type"] == "Recreate", "RWO volume: Recreate")

    # Another metrics port: the container listens where its port and the Service say.
    _, docs = render(chart, {"service": {"metricsPort": 9100}})
    arno = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    check(env_of(arno).get("ARNO_METRICS_LISTEN") == "0.0.0.0:9100", "metrics listener follows service.metricsPort")
    check({p["name"]: p["containerPort"] for p in arno["ports"]}["metrics"] == 9100, "metrics containerPort")

    # A digest pins the image and wins over the tag.
    digest = "sha256:" + "a" * 64
    _, docs = render(chart, {**production, "image": {**production["image"], "digest": digest}})
    image = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    check(image == f"registry.internal:5000/platform/arno@{digest}", f"digest: {image}")

    # The validator does refuse what Kubernetes would (strict: unknown fields too).
    broken = find(docs, "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    path = os.path.join(work, "broken.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(broken, f)
    tool = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    out = subprocess.run([tool, "--strict", "-k", KUBE_VERSIONS[0], path], capture_output=True, text=True)
    check(out.returncode != 0, "kubernetes-validate --strict accepted an unknown field")

    # --- refusals ----------------------------------------------------------------------------
    refused(chart, {"replicaCount": 2}, "needs PostgreSQL")
    refused(chart, {**production, "storage": {"url": ""}}, "needs S3 storage")
    refused(chart, {**production, "secretKeys": {**production["secretKeys"], "instanceKey": ""}}, "instance key")
    refused(chart, {**production, "persistence": {"enabled": True}}, "ReadWriteMany")
    refused(chart, {"database": {"external": True}}, "PostgreSQL URL in existingSecret")
    refused(chart, {"secretKeys": {"databaseUrl": "database-url"}}, "set existingSecret")
    schema_refuses(chart, {"image": {"repository": "arno", "pullPolicy": "Sometimes"}}, "an unknown pull policy")
    schema_refuses(chart, {"replicaCount": "three"}, "a replica count that is not a number")
    schema_refuses(chart, {"config": {"publicUrl": "https://arno.example.com/path"}}, "a public URL with a path")
    schema_refuses(chart, {"storage": {"url": "file:///data"}}, "a non-S3 storage URL")
    schema_refuses(chart, {"imageRegistry": "x"}, "an unknown top-level key (a typo)")

    if failures:
        print("Helm chart checks failed:\n- " + "\n- ".join(failures), file=sys.stderr)
        return 1
    print(f"Helm chart: default and production renders pass lint and kubernetes-validate --strict "
          f"({', '.join(KUBE_VERSIONS)}), with every assertion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
