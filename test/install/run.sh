#!/usr/bin/env bash
# Install the build tree into a scratch prefix, then build and run a tiny
# program against it three ways: CMake find_package (shared and static) and
# pkg-config.   run.sh <build-dir> <this-folder>
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/troupe.h"

cmake -S "$src" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libtroupe.so' | head -n1)")
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/hello_shared"
"$tmp/consumer/hello_static"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=gnu17 -Wall -Werror "$src/hello.c" $(pkg-config --cflags --libs troupe) -o "$tmp/hello_pc"
LD_LIBRARY_PATH="$libdir" "$tmp/hello_pc"
cc -std=gnu17 -Wall -Werror "$src/hello.c" $(pkg-config --cflags troupe) \
   "$libdir/libtroupe.a" $(pkg-config --static --libs-only-l troupe | sed 's/-ltroupe//') \
   -o "$tmp/hello_pc_static"
"$tmp/hello_pc_static"
echo "install test: 4 passed, 0 failed"
