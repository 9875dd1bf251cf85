# Shared by the packaging scripts (sourced): version, revision, reproducible time, tools.
ARNO_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
ARNO_REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Reproducible builds: every file time in the packages is the last commit's time.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
DIST=${ARNO_DIST_DIR:-dist}
ARNO_TARGET=${ARNO_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
export ARNO_TARGET

# Install a cargo subcommand at a pinned version, once.
cargo_tool() {
  local crate=$1 version=$2 bin=$3
  if ! cargo "${bin#cargo-}" --version 2>/dev/null | grep -qF "$version"; then
    echo "==> installing $crate $version" >&2
    cargo install --locked --quiet "$crate" --version "$version" >&2
  fi
}

# Install Debian packages that are missing, once.
apt_tools() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} (Debian)" >&2
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The Python tools of scripts/requirements-packaging.txt, in their own venv, once.
packaging_venv() {
  PKG_VENV="${ARNO_CACHE_DIR:-$HOME/.cache/arno}/venv-packaging"
  local hash
  hash=$(sha256sum scripts/requirements-packaging.txt | cut -c1-16)
  if [ ! -f "$PKG_VENV/.installed-$hash" ]; then
    echo "==> installing the packaging tools into $PKG_VENV" >&2
    rm -rf "$PKG_VENV"
    python3 -m venv "$PKG_VENV"
    scripts/pip-install "$PKG_VENV" scripts/requirements-packaging.txt
    touch "$PKG_VENV/.installed-$hash"
  fi
}

# Deterministic tar.gz of DIR's contents (as DIR's name) into OUT.
reproducible_tgz() {
  local dir=$1 out=$2
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$(dirname "$dir")" -cf - "$(basename "$dir")" | gzip -n -9 >"$out.partial"
  mv "$out.partial" "$out"
}
