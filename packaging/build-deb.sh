#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make deb`: a binary .deb from the already built tree, with dpkg-deb (no
# debhelper). Usage: packaging/build-deb.sh [BUILD]   (default: build)
# Writes BUILD/isthmus_VERSION-REVISION_ARCH.deb and prints its path.
set -eu
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

. "$here/package.conf"
pkg_setup build-deb
REVISION=${DEB_REVISION:-$PKG_REVISION}
ARCH=$(dpkg --print-architecture)
DEBVER="$VERSION-$REVISION"
OUT="$BUILD/isthmus_${DEBVER}_${ARCH}.deb"

# The packaged configuration must load.
out=$("$BUILD/isthmus" -c --portable -f "$here/isthmus.yaml" 2>&1) || { echo "$out" >&2; exit 1; }

stage="$BUILD/pkg/deb"
rm -rf "$stage"
umask 022
mkdir -p "$stage/DEBIAN"
inst() { install -D -m "$1" "$2" "$stage$3"; }

inst 0755 "$BUILD/isthmus" /usr/sbin/isthmus
inst 0755 "$BUILD/isthmusctl" /usr/sbin/isthmusctl
# Keep debug information out of the package (as dh_strip does).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$stage/usr/sbin/isthmus" "$stage/usr/sbin/isthmusctl"

inst 0644 "$here/isthmus.service" /lib/systemd/system/isthmus.service
inst 0644 "$here/isthmus.yaml" /etc/isthmus/isthmus.yaml
inst 0644 "$here/default/isthmus" /etc/default/isthmus
inst 0644 "$here/logrotate/isthmus" /etc/logrotate.d/isthmus

for m in isthmus.8 isthmusctl.8 isthmus.yaml.5; do
	sec=${m##*.}
	install -d "$stage/usr/share/man/man$sec"
	gzip -9nc "$here/man/$m" >"$stage/usr/share/man/man$sec/$m.gz"
done

doc="$stage/usr/share/doc/isthmus"
install -d "$doc/examples"
install -m 0644 "$here/copyright" "$doc/copyright"
gzip -9nc README.md >"$doc/README.md.gz"
install -d "$doc/docs"
for d in docs/*.md; do gzip -9nc "$d" >"$doc/docs/$(basename "$d").gz"; done
install -m 0644 conf/isthmus.yaml "$doc/examples/isthmus.yaml"

# changelog.Debian: one entry for this build, dated by the last commit so
# that two builds of one tree give the same package.
date=$(git log -1 --format=%cD 2>/dev/null || true)
[ -n "$date" ] || date=$(date -R)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	printf 'isthmus (%s) unstable; urgency=medium\n\n' "$DEBVER"
	printf '  * Binary package of isthmus %s, built from commit %s.\n\n' "$VERSION" "$commit"
	printf ' -- %s  %s\n' "$PKG_MAINTAINER" "$date"
} | gzip -9n >"$doc/changelog.Debian.gz"

# Depends from the binaries' NEEDED entries (dpkg-shlibdeps wants a
# debian/control: give it a minimal one in a scratch directory).
depends=""
if command -v dpkg-shlibdeps >/dev/null; then
	tmp=$(mktemp -d)
	mkdir -p "$tmp/debian"
	printf 'Source: isthmus\n\nPackage: isthmus\nArchitecture: any\n' >"$tmp/debian/control"
	depends=$(cd "$tmp" && dpkg-shlibdeps -O "$top/$stage/usr/sbin/isthmus" \
		"$top/$stage/usr/sbin/isthmusctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || depends=""
	rm -rf "$tmp"
fi
[ -n "$depends" ] || depends=$PKG_DEPENDS_FALLBACK
depends="$depends, adduser"

for f in postinst prerm postrm; do
	install -m 0755 "$here/debian/$f" "$stage/DEBIAN/$f"
done
install -m 0644 "$here/debian/conffiles" "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
	xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$DEBVER|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$PKG_MAINTAINER|" \
	-e "s|@SIZE@|$size|" -e "s|@DEPENDS@|$depends|" "$here/debian/control.in" >"$stage/DEBIAN/control"

# Every file root:root, whoever builds it; times from the last commit.
epoch=$(git log -1 --format=%ct 2>/dev/null || date +%s)
find "$stage" -exec touch -h -d "@$epoch" {} +
export SOURCE_DATE_EPOCH="$epoch"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$OUT" >/dev/null
echo "$OUT"
