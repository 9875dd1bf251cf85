"""Run the Helm chart's containers from the OCI image, as a kubelet would, without a cluster.

For a values file, render the chart (helm-python-sdk) and take the Deployment's container and,
when there is one, the migration Job's: their args, their environment laid over the image's,
the ConfigMap at /etc/arno/arno.toml, the Secret's keys as files under /etc/arno/secrets, an
empty data volume and /tmp — on the image's rootfs mounted **read-only**, as user 65532.
The Job must migrate and exit 0; then the server must answer /ready and /health. Like a
container runtime, the emulation mounts /proc and a minimal /dev (null, zero, full, random,
urandom).

Runs the default values (SQLite on the data volume) and, when TEST_PG_URL, TEST_S3_ENDPOINT
and TEST_S3_BUCKET are set, the production values on a fresh PostgreSQL database and an S3
prefix. The one change to what the chart renders: the HTTP and metrics ports are moved to free
ones (the host's network is shared).

Usage (root): python pod_run.py CHART_DIR ROOTFS IMAGE_CONFIG_JSON WORK_DIR
"""

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import helm_python as helm
import yaml


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(chart_dir, values):
    chart = helm.Chart.load(chart_dir)
    out = chart.render(values, name="arno", namespace="design", is_install=True)
    docs = [d for path, text in out.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]
    return {d["kind"]: d for d in docs}


def container_env(image_env, container, overrides):
    """The image's Env, then the container's env (a pod's env wins), then the test's ports."""
    env = dict(e.split("=", 1) for e in image_env)
    for e in container.get("env", []):
        assert "valueFrom" not in e, f"env from a reference is not emulated: {e}"
        env[e["name"]] = e.get("value", "")
    env.update(overrides)
    return env


def run_container(rootfs, work, name, container, env, config_text, secret_files, background=False):
    """Mount like a kubelet (read-only root, volumes, ConfigMap file, Secret dir) and exec."""
    base = os.path.join(work, name)
    root = os.path.join(base, "rootfs")
    os.makedirs(base)
    subprocess.run(["cp", "-a", rootfs, root], check=True)  # owners too (/home/nonroot is 65532's)
    os.makedirs(os.path.join(root, "etc/arno/secrets"), exist_ok=True)
    mounts = [("tmp", "/tmp", 0o1777)]
    for m in container.get("volumeMounts", []):
        if m["mountPath"] == "/var/lib/arno":
            mounts.append(("data", "/var/lib/arno", 0o700))
    binds = []
    for vol, path, mode in mounts:
        src = os.path.join(base, vol)
        os.makedirs(src, exist_ok=True)
        os.chmod(src, mode)
        os.chown(src, 65532, 65532)  # fsGroup-owned, as the kubelet prepares it
        binds.append((src, path, False))
    if config_text is not None:
        cfg = os.path.join(base, "arno.toml")
        with open(cfg, "w") as f:
            f.write(config_text)
        os.chmod(cfg, 0o644)
        open(os.path.join(root, "etc/arno/arno.toml"), "w").close()
        binds.append((cfg, "/etc/arno/arno.toml", True))
    if secret_files:
        sdir = os.path.join(base, "secrets")
        os.makedirs(sdir)
        for key, value in secret_files.items():
            p = os.path.join(sdir, key)
            with open(p, "w") as f:
                f.write(value)
            os.chmod(p, 0o440)
            os.chown(p, 0, 65532)  # defaultMode 0440, group fsGroup
        os.chmod(sdir, 0o755)
        binds.append((sdir, "/etc/arno/secrets", True))
    # What every container runtime provides: /proc and a minimal /dev.
    devices = ["null", "zero", "full", "random", "urandom"]
    for d in ["proc", "dev"]:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for dev in devices:
        open(os.path.join(root, "dev", dev), "w").close()
    script = ["set -e", f"mount --bind {root} {root}", f"mount -o remount,bind,ro {root}",
              f"mount -t proc proc {root}/proc"]
    script += [f"mount --bind /dev/{dev} {root}/dev/{dev}" for dev in devices]
    for src, path, ro in binds:
        script.append(f"mount --bind {src} {root}{path}")
        if ro:
            script.append(f"mount -o remount,bind,ro {root}{path}")
    # Only the container's environment reaches arno (chroot keeps the environment it is given).
    assignments = [shlex.quote(f"{k}={v}") for k, v in sorted(env.items())]
    command = ["/usr/bin/arno"] + container.get("args", [])
    script.append(" ".join(["exec", "env", "-i", *assignments, "/usr/sbin/chroot", "--userspec=65532:65532", root, *command]))
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
    log = open(os.path.join(base, "log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    if background:
        return proc, os.path.join(base, "log")
    code = proc.wait(timeout=120)
    return code, os.path.join(base, "log")


def wait_ready(port, proc, log):
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"arno serve exited with {proc.returncode}:\n{open(log).read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return json.loads(r.read())
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"not ready:\n{open(log).read()[-3000:]}")


def run(chart_dir, rootfs, image_env, work, label, values, secret_files):
    objs = render(chart_dir, values)
    config_text = objs["ConfigMap"]["data"]["arno.toml"]
    port, mport = free_port(), free_port()
    overrides = {"ARNO_LISTEN": f"127.0.0.1:{port}", "ARNO_METRICS_LISTEN": f"127.0.0.1:{mport}"}
    if "Job" in objs:
        job = objs["Job"]["spec"]["template"]["spec"]["containers"][0]
        env = container_env(image_env, job, overrides)
        code, log = run_container(rootfs, work, f"{label}-job", job, env, None, secret_files)
        if code != 0:
            raise SystemExit(f"{label}: the migration Job failed ({code}):\n{open(log).read()[-3000:]}")
        if "applied migration" not in open(log).read():
            raise SystemExit(f"{label}: the migration Job applied nothing:\n{open(log).read()}")
    arno = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = container_env(image_env, arno, overrides)
    proc, log = run_container(rootfs, work, f"{label}-pod", arno, env, config_text, secret_files, background=True)
    try:
        readiness = wait_ready(port, proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
            assert b"arno_" in r.read(), "no arno metrics"
        text = open(log).read()
        started = [json.loads(line) for line in text.splitlines() if '"event_type":"started"' in line]
        assert started, f"no start event:\n{text[-2000:]}"
        print(f"{label}: migration Job {'ran' if 'Job' in objs else 'not rendered'}; the pod on a read-only "
              f"root answered /ready ({readiness.get('status')}), /health and /metrics; database "
              f"{started[0].get('database')}, storage {started[0].get('storage')}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if proc.returncode not in (0, -15):
        raise SystemExit(f"{label}: arno serve stopped with {proc.returncode}:\n{open(log).read()[-2000:]}")


def main():
    chart_dir, rootfs, image_config, work = sys.argv[1:5]
    image_env = json.load(open(image_config))["config"]["Env"]
    run(chart_dir, rootfs, image_env, work, "default", None, {})

    pg, s3, bucket = (os.environ.get(k) for k in ("TEST_PG_URL", "TEST_S3_ENDPOINT", "TEST_S3_BUCKET"))
    if not (pg and s3 and bucket):
        if os.environ.get("TEST_REQUIRE_SERVICES") == "1":
            raise SystemExit("TEST_PG_URL, TEST_S3_ENDPOINT and TEST_S3_BUCKET are required")
        print("production values: skipped (no TEST_PG_URL / TEST_S3_ENDPOINT / TEST_S3_BUCKET)")
        return
    name = f"arno_pod_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", pg, "-c", f"CREATE DATABASE {name}"], check=True)
    db_url = pg.rsplit("/", 1)[0] + "/" + name
    with open(os.path.join(chart_dir, "ci", "production-values.yaml")) as f:
        values = yaml.safe_load(f)
    values["storage"] = {"url": f"s3://{bucket}/pod-{uuid.uuid4().hex[:12]}", "s3": {"endpoint": s3}}
    secret_files = {
        "database-url": db_url + "\n",
        "s3-access-key-id": "arno-test",
        "s3-secret-access-key": "arno-test-secret",
        "instance-key": secrets.token_urlsafe(32),
        "oidc-corp": "oidc-client-secret",
    }
    run(chart_dir, rootfs, image_env, work, "production", values, secret_files)


if __name__ == "__main__":
    main()
