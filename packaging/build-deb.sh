#!/usr/bin/env bash
# Builds the .deb with cargo-deb (installing cargo-deb from crates.io if it is missing) and
# checks that the package holds the binary, the systemd user unit, the man page and the
# completions. CI runs this; so can a maintainer. Output: target/debian/opensyncd_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! command -v cargo-deb >/dev/null 2>&1; then
  tools="${CARGO_TARGET_DIR:-target}/tools"
  if [ ! -x "$tools/bin/cargo-deb" ]; then
    echo "installing cargo-deb $CARGO_DEB_VERSION into $tools"
    cargo install --locked --quiet --version "$CARGO_DEB_VERSION" --root "$tools" cargo-deb
  fi
  PATH="$(cd "$tools/bin" && pwd):$PATH"
fi

deb="$(cargo deb --locked 2>/dev/null | tail -n 1)"
if [ ! -f "$deb" ]; then
  # Older cargo-deb print nothing useful; find the newest package instead.
  deb="$(ls -t target/debian/opensyncd_*.deb | head -n 1)"
fi
echo "built $deb"

listing="$(dpkg-deb --contents "$deb")"
missing=0
for path in \
  ./usr/bin/opensyncd \
  ./usr/lib/systemd/user/opensyncd.service \
  ./usr/share/man/man1/opensyncd.1.gz \
  ./usr/share/bash-completion/completions/opensyncd \
  ./usr/share/zsh/vendor-completions/_opensyncd \
  ./usr/share/fish/vendor_completions.d/opensyncd.fish; do
  if ! grep -q " $path\$" <<<"$listing"; then
    echo "missing from the package: $path" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || { echo "$listing" >&2; exit 1; }

# The packaged binary runs.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --extract "$deb" "$tmp"
"$tmp/usr/bin/opensyncd" --version
echo "package ok: $(dpkg-deb --field "$deb" Package Version Architecture | tr '\n' ' ')"
