#!/bin/sh
# SPDX-License-Identifier: MIT
#
# installed.sh - prove that a program outside the source tree builds and
# runs against the INSTALLED libaiod, finding it through pkg-config alone.
#
#   installed.sh BUILDDIR SOURCEDIR LIBDIR INCLUDEDIR WORKER
#
# BUILDDIR and SOURCEDIR are the project's; LIBDIR, INCLUDEDIR and WORKER
# are the absolute install paths the build was configured with (meson
# passes all five).  The script:
#
#  1. stages an install with meson install --destdir into a temporary
#     directory, and checks that aiod.h, libaiod.so, aiod.pc and the
#     worker are there, and the private headers are not;
#  2. checks with nm -D that libaiod.so exports exactly the functions
#     aiod.h declares: aiod_ names only, none of the aiod__ internals;
#  3. copies aiodhash.c and hashjob.[ch] out of the tree and compiles
#     them with nothing but `pkg-config --cflags --libs aiod`, pointed at
#     the staged aiod.pc (PKG_CONFIG_PATH) with PKG_CONFIG_SYSROOT_DIR
#     set to the staging directory, so that -I and -L lead into it; no
#     project flags (not even -D_GNU_SOURCE), warnings as errors.  The
#     compiler's dependency list must show aiod.h came from the stage.
#     The header must also compile alone in strict ISO C11 and in C++;
#  4. runs check.py on the program, with LD_LIBRARY_PATH into the stage
#     (the loader must pick the staged libaiod) and AIOD_WORKER naming
#     the staged worker.
#
# The temporary directory is removed on exit, whatever happens.
set -eu

if [ $# -ne 5 ]; then
	echo "usage: installed.sh BUILDDIR SOURCEDIR LIBDIR INCLUDEDIR WORKER" >&2
	exit 2
fi
build=$1 src=$2 libdir=$3 includedir=$4 worker=$5
examples=$src/tests/examples

fail() {
	echo "installed.sh: $*" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/aiod-installed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
stage=$tmp/stage

# 1. The staged install.
meson install -C "$build" --no-rebuild --destdir "$stage" --quiet
lib=$stage$libdir/libaiod.so
header=$stage$includedir/aiod.h
pc=$stage$libdir/pkgconfig/aiod.pc
for f in "$header" "$lib" "$pc"; do
	[ -e "$f" ] || fail "not installed: ${f#"$stage"}"
done
[ -x "$stage$worker" ] || fail "worker not installed at $worker"
for f in aiod-internal.h aiod-proto.h; do
	[ -z "$(find "$stage" -name "$f")" ] || fail "private header installed: $f"
done

# 2. The exports: every defined dynamic symbol but the version node ("A"),
# without its @@AIOD_x.y suffix, against the functions the header declares.
exported=$(nm -D --defined-only "$lib" |
	awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort)
declared=$(grep -v '^typedef' "$header" |
	sed -n 's/^[a-z][a-z0-9_ ]*[ *]\(aiod_[a-z0-9_]*\)(.*/\1/p' | sort -u)
[ -n "$exported" ] || fail "libaiod.so exports nothing"
if printf '%s\n' "$exported" | grep -v '^aiod_[a-z]' >&2; then
	fail "libaiod.so exports the names above, which are not public aiod_ names"
fi
if [ "$exported" != "$declared" ]; then
	printf '%s\n' "$exported" >"$tmp/exported"
	printf '%s\n' "$declared" >"$tmp/declared"
	echo "exported by libaiod.so only:" >&2
	comm -23 "$tmp/exported" "$tmp/declared" >&2
	echo "declared in aiod.h only:" >&2
	comm -13 "$tmp/exported" "$tmp/declared" >&2
	fail "libaiod.so exports and aiod.h declarations differ"
fi

# 3. An outside program, built from the staged files alone.
mkdir "$tmp/src"
cp "$examples/aiodhash.c" "$examples/hashjob.c" "$examples/hashjob.h" \
	"$tmp/src/"
export PKG_CONFIG_PATH="$stage$libdir/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$stage"
case "$(pkg-config --variable=pcfiledir aiod)" in
*"$stage$libdir/pkgconfig") ;;
*) fail "pkg-config does not find the staged aiod.pc" ;;
esac
cflags=$(pkg-config --cflags aiod)
libs=$(pkg-config --libs aiod)
case "$cflags $libs" in
*"$src"* | *"$build"*) fail "pkg-config points into the tree: $cflags $libs" ;;
esac
cd "$tmp/src"
for f in aiodhash hashjob; do
	# shellcheck disable=SC2086 # the flags are words
	${CC:-cc} -Wall -Wextra -Werror -MMD -c "$f.c" $cflags
	grep -qF "$header" "$f.d" || fail "$f.c did not include the staged aiod.h"
done
# shellcheck disable=SC2086
${CC:-cc} -o aiodhash aiodhash.o hashjob.o $libs

# A project built with c_std=c11, or in C++, must be able to include it.
printf '#include <aiod.h>\nint main(void) { return !aiod_op_name(0); }\n' \
	>alone.c
# shellcheck disable=SC2086
${CC:-cc} -std=c11 -pedantic -Wall -Wextra -Werror -c alone.c $cflags ||
	fail "aiod.h does not compile alone with -std=c11 -pedantic"
if command -v c++ >/dev/null; then
	cp alone.c alone.cc
	# shellcheck disable=SC2086
	c++ -Wall -Wextra -Werror -c alone.cc $cflags ||
		fail "aiod.h does not compile alone as C++"
fi

# 4. Run it on the staged library and worker.
# Not inherited: meson points it at the build tree.
export LD_LIBRARY_PATH="$stage$libdir"
export AIOD_WORKER="$stage$worker"
ldd ./aiodhash | grep -qF "=> $lib" || fail "the loader does not pick $lib"
python3 "$examples/check.py" ./aiodhash
