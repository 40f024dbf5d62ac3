#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make rpm`: a binary rpm from the already built tree with rpmbuild and
# packaging/rpm/isthmus.spec. Usage: packaging/build-rpm.sh [BUILD]
# Writes BUILD/isthmus-VERSION-RELEASE.ARCH.rpm and prints its path.
set -eu
BUILD=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

command -v rpmbuild >/dev/null || { echo "build-rpm: rpmbuild not found (apt-get install rpm)" >&2; exit 1; }

. "$here/package.conf"
pkg_setup build-rpm
RELEASE=${RPM_RELEASE:-$PKG_REVISION}
out=$("$BUILD/isthmus" -c --portable -f "$here/isthmus.yaml" 2>&1) || { echo "$out" >&2; exit 1; }

top_abs="$top/$BUILD/pkg/rpm"
stage="$top_abs/stage"
rm -rf "$top_abs"
umask 022
mkdir -p "$stage" "$top_abs/RPMS" "$top_abs/BUILD" "$top_abs/tmp"
unitdir=$(rpm --eval '%{?_unitdir}')
[ -n "$unitdir" ] || unitdir=/usr/lib/systemd/system
inst() { install -D -m "$1" "$2" "$stage$3"; }

inst 0755 "$BUILD/isthmus" /usr/sbin/isthmus
inst 0755 "$BUILD/isthmusctl" /usr/sbin/isthmusctl
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$stage/usr/sbin/isthmus" "$stage/usr/sbin/isthmusctl"
inst 0644 "$here/isthmus.service" "$unitdir/isthmus.service"
inst 0644 "$here/isthmus.yaml" /etc/isthmus/isthmus.yaml
inst 0644 "$here/default/isthmus" /etc/sysconfig/isthmus
inst 0644 "$here/logrotate/isthmus" /etc/logrotate.d/isthmus
install -d -m 2750 "$stage/var/log/isthmus"
for m in isthmus.8 isthmusctl.8 isthmus.yaml.5; do
	sec=${m##*.}
	install -d "$stage/usr/share/man/man$sec"
	gzip -9nc "$here/man/$m" >"$stage/usr/share/man/man$sec/$m.gz"
done
inst 0644 README.md /usr/share/doc/isthmus/README.md
for d in docs/*.md; do inst 0644 "$d" "/usr/share/doc/isthmus/docs/$(basename "$d")"; done
inst 0644 conf/isthmus.yaml /usr/share/doc/isthmus/examples/isthmus.yaml
inst 0644 "$here/copyright" /usr/share/doc/isthmus/copyright

rpmbuild -bb --quiet \
	--define "_topdir $top_abs" \
	--define "_tmppath $top_abs/tmp" \
	--define "_unitdir $unitdir" \
	--define "_docdir /usr/share/doc" \
	--define "isthmus_stage $stage" \
	--define "isthmus_version $VERSION" \
	--define "isthmus_release $RELEASE" \
	--define "packager $PKG_MAINTAINER" \
	"$here/rpm/isthmus.spec" >&2
rpm=$(find "$top_abs/RPMS" -name 'isthmus-*.rpm' | head -n 1)
[ -n "$rpm" ] || { echo "build-rpm: rpmbuild produced no package" >&2; exit 1; }
rm -f "$BUILD"/isthmus-*.rpm
cp "$rpm" "$BUILD/"
echo "$BUILD/$(basename "$rpm")"
