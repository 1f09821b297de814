#!/bin/sh
# Counts the instructions (valgrind's callgrind) one masked 64 KB benchmark
# document costs under wazero, host included: a figure a busy machine does
# not move, for comparing two builds of a module. Run from the repository's
# root:
#
#	sh filters/mask/rsguest/icount.sh [module.wasm ...]
#
# (the built-in module when none is named). CUSTOS_ICOUNT_N documents are
# masked (20); CUSTOS_ICOUNT_SIZE sets the document's size in bytes.
set -e
command -v valgrind >/dev/null || { echo "icount.sh needs valgrind (apt-get install valgrind)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -tags icount -o "$dir/mask.test" ./filters/mask
n=${CUSTOS_ICOUNT_N:-20}
count() { # module docs
	CUSTOS_ICOUNT_MODULE=$1 CUSTOS_ICOUNT_N=$2 CUSTOS_ICOUNT_CACHE=$dir/cache GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 \
		valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" --smc-check=all \
		"$dir/mask.test" -test.run TestInstructionCount 2>&1 | sed -n 's/.*Collected : //p'
}
[ $# -gt 0 ] || set -- ""
for m in "$@"; do
	count "$m" 0 >/dev/null # compiles the module into the cache
	zero=$(count "$m" 0)
	all=$(count "$m" "$n")
	echo "${m:-built-in}: $(( (all - zero) / n )) instructions per document"
done
