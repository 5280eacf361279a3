#!/bin/sh
# Install into a temporary prefix (with DESTDIR staging) and build examples/simple.c
# against it with pkg-config only, then run it on a test model with the shared library.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/skipless-test
# The soname's major version, read from the header as the Makefile does.
major=$(sed -n 's/^#define SKL_VERSION_MAJOR \([0-9][0-9]*\).*/\1/p' include/skipless.h)
[ -n "$major" ] || { echo "install: no SKL_VERSION_MAJOR in include/skipless.h" >&2; exit 1; }
make -s install PREFIX="$prefix" DESTDIR="$tmp/stage" >/dev/null
root="$tmp/stage$prefix"
for f in include/skipless.h lib/libskipless.a lib/libskipless.so "lib/libskipless.so.$major" lib/pkgconfig/skipless.pc bin/skipless; do
    [ -e "$root/$f" ] || { echo "install: missing $f" >&2; exit 1; }
done
# The .pc file names the final prefix; point pkg-config at the staged copy.
sed "s|^prefix=.*|prefix=$root|" "$root/lib/pkgconfig/skipless.pc" > "$tmp/skipless.pc"
cflags=$(PKG_CONFIG_PATH="$tmp" pkg-config --cflags skipless)
libs=$(PKG_CONFIG_PATH="$tmp" pkg-config --libs skipless)
cc -std=c11 -Wall -Wextra -Werror $cflags examples/simple.c $libs -o "$tmp/simple"
soname=$(objdump -p "$root/lib/libskipless.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libskipless.so.$major" ] || { echo "install: soname is '$soname'" >&2; exit 1; }
# Only the public API is exported.
bad=$(nm -D --defined-only "$root/lib/libskipless.so" | awk '$2 ~ /[TD]/ {print $3}' | grep -v '^skl_' || true)
[ -z "$bad" ] || { echo "install: non-API symbols exported: $bad" >&2; exit 1; }
nm -D --defined-only "$root/lib/libskipless.so" | grep -q ' skl_fail$' && { echo "install: internal skl_fail exported" >&2; exit 1; }
model=${1:-build/testmodels/models/serial_mha_silu_glu}
out=$(LD_LIBRARY_PATH="$root/lib" "$tmp/simple" "$model" 1 2 3)
n=$(printf '%s\n' "$out" | wc -w)
[ "$n" -eq 16 ] || { echo "install: simple printed '$out'" >&2; exit 1; }
LD_LIBRARY_PATH="$root/lib" ldd "$tmp/simple" | grep -q "$root/lib/libskipless.so.$major" || { echo "install: not linked to the installed shared library" >&2; exit 1; }
echo "install: ok (pkg-config build of examples/simple.c against $prefix, shared library, 16 tokens)"
