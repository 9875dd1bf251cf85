#!/usr/bin/env python3
"""Write Arno's OCI image without a container engine, deterministically.

The image is one layer on an empty base ("scratch"): the static `arno` binary, the CA
certificates, `/etc/passwd` and `/etc/group` with the unprivileged user 65532 ("nonroot"),
`/etc/nsswitch.conf`, an empty `/tmp` and the data directory `/var/lib/arno`. No shell, no
package manager.

Same inputs (binary, CA bundle, version, revision, SOURCE_DATE_EPOCH) give byte-identical
archives and so the same digests: every file time is SOURCE_DATE_EPOCH, owners are numeric,
entries are sorted, gzip carries no name or time.

Writes, into OUT_DIR:
  arno-<version>-oci.tar     an OCI image layout in a tar ("oci-archive:" for skopeo/podman)
  arno-<version>-docker.tar  a `docker save` archive ("docker load" / "podman load" ready)
and prints the manifest digest.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

NONROOT = 65532
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnonroot:x:{NONROOT}:\n"
# glibc resolves host names through NSS: files (/etc/hosts, which the runtime mounts), then DNS.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tar:
    """A deterministic tar: fixed times and owners, entries in the order added."""

    def __init__(self, mtime: int):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.mtime = mtime

    def _info(self, name: str, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mtime = self.mtime
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0):
        info = self._info(name.rstrip("/") + "/", mode, uid, gid)
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)

    def file(self, name: str, data: bytes, mode: int = 0o644):
        info = self._info(name, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def rootfs_layer(binary: bytes, ca_bundle: bytes, mtime: int) -> bytes:
    t = Tar(mtime)
    for d in ["etc", "etc/ssl", "etc/ssl/certs", "home"]:
        t.dir(d)
    t.file("etc/group", GROUP.encode())
    t.file("etc/nsswitch.conf", NSSWITCH.encode())
    t.file("etc/passwd", PASSWD.encode())
    t.file("etc/ssl/certs/ca-certificates.crt", ca_bundle)
    t.dir("home/nonroot", 0o700, NONROOT, NONROOT)
    t.dir("tmp", 0o1777)
    t.dir("usr")
    t.dir("usr/bin")
    t.file("usr/bin/arno", binary, 0o755)
    t.dir("var")
    t.dir("var/lib")
    t.dir("var/lib/arno", 0o700, NONROOT, NONROOT)
    return t.bytes()


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as z:
        z.write(data)
    return out.getvalue()


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True, help="the static arno binary")
    p.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    p.add_argument("--version", required=True)
    p.add_argument("--revision", required=True, help="the git commit the binary was built from")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--repository", default="arno", help="image name in the docker archive's tag")
    args = p.parse_args()

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(args.binary, "rb") as f:
        binary = f.read()
    with open(args.ca_bundle, "rb") as f:
        ca_bundle = f.read()

    layer = rootfs_layer(binary, ca_bundle, epoch)
    layer_gz = gzip_bytes(layer)
    labels = {
        "org.opencontainers.image.title": "Arno",
        "org.opencontainers.image.description":
            "Self-hosted product-design workspace on top of your own git repositories",
        "org.opencontainers.image.version": args.version,
        "org.opencontainers.image.revision": args.revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "LicenseRef-Proprietary",
        "org.opencontainers.image.vendor": "Arno",
    }
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "author": "Arno",
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "Entrypoint": ["/usr/bin/arno"],
            "Cmd": ["serve"],
            "WorkingDir": "/var/lib/arno",
            "Env": [
                "PATH=/usr/bin",
                "ARNO_DATA_DIR=/var/lib/arno",
                "ARNO_LISTEN=0.0.0.0:8080",
                "ARNO_METRICS_LISTEN=0.0.0.0:9464",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            ],
            "ExposedPorts": {"8080/tcp": {}, "9464/tcp": {}},
            "Volumes": {"/var/lib/arno": {}},
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [{"created": created, "created_by": f"scripts/build-image (arno {args.version})"}],
    }
    config_bytes = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer_gz), "size": len(layer_gz)}],
        "annotations": {k: v for k, v in labels.items() if k.endswith((".created", ".version", ".revision"))},
    }
    manifest_bytes = canonical(manifest)
    manifest_digest = sha256(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": args.version},
        }],
    }

    os.makedirs(args.out_dir, exist_ok=True)
    blob = lambda data: "blobs/sha256/" + hashlib.sha256(data).hexdigest()  # noqa: E731

    oci = Tar(epoch)
    oci.dir("blobs")
    oci.dir("blobs/sha256")
    for data in sorted([config_bytes, layer_gz, manifest_bytes], key=lambda d: hashlib.sha256(d).hexdigest()):
        oci.file(blob(data), data)
    oci.file("index.json", canonical(index))
    oci.file("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    write(os.path.join(args.out_dir, f"arno-{args.version}-oci.tar"), oci.bytes())

    # `docker save` layout: the layer uncompressed, as every docker/podman version loads it.
    tag = f"{args.repository}:{args.version}"
    docker = Tar(epoch)
    docker.dir("blobs")
    docker.dir("blobs/sha256")
    for data in sorted([config_bytes, layer], key=lambda d: hashlib.sha256(d).hexdigest()):
        docker.file(blob(data), data)
    docker.file("manifest.json", canonical([{
        "Config": blob(config_bytes),
        "RepoTags": [tag],
        "Layers": [blob(layer)],
    }]))
    write(os.path.join(args.out_dir, f"arno-{args.version}-docker.tar"), docker.bytes())
    print(manifest_digest)
    return 0


def write(path: str, data: bytes):
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
