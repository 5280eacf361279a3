#!/bin/sh
# Build the Rust example against a staged `make install`, found only through pkg-config
# (no SKIPLESS_LIB_DIR; build.rs then reads the installed header, found through the
# same skipless.pc), and check that it generates the same tokens as the CLI.
#   sh examples/rust/test_pkgconfig.sh CARGO CLI MODEL
set -eu
cargo=$1 cli=$2 model=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=/opt/skipless-rust-test
make -s install PREFIX="$prefix" DESTDIR="$tmp/stage" >/dev/null
root="$tmp/stage$prefix"
sed "s|^prefix=.*|prefix=$root|" "$root/lib/pkgconfig/skipless.pc" > "$tmp/skipless.pc"
(cd examples/rust && env -u SKIPLESS_LIB_DIR PKG_CONFIG_PATH="$tmp" CARGO_TARGET_DIR="$tmp/target" \
    "$cargo" build --offline -q --example generate)
bin="$tmp/target/debug/examples/generate"
major=$(sed -n 's/^#define SKL_VERSION_MAJOR \([0-9][0-9]*\).*/\1/p' "$root/include/skipless.h")
LD_LIBRARY_PATH="$root/lib" ldd "$bin" | grep -q "$root/lib/libskipless.so.$major" ||
    { echo "rust pkg-config: example not linked to the installed library" >&2; exit 1; }
got=$(LD_LIBRARY_PATH="$root/lib" "$bin" "$model" --tokens 1,2,3 -n 8 --seed 5 2>/dev/null | tr -s ' \n' ' ')
want=$("$cli" generate "$model" --tokens 1,2,3 -n 8 --seed 5 2>/dev/null | tr ',\n' '  ')
[ "$got" = "$want" ] || { echo "rust pkg-config: example printed '$got', CLI '$want'" >&2; exit 1; }
echo "rust pkg-config: ok (built with pkg-config --libs skipless against $prefix; same tokens as the CLI)"
