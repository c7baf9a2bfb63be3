#!/bin/bash
# The C++ client library links the protocol and Cap'n Proto only (issue 19): a client
# program carries no CAF, no LMDB, no jemalloc, and no header of client/ or protocol/
# reaches into the node's layers (actors/, persistence/, cluster/, gateway/) or CAF.
#   client_layering.sh SOURCE_DIR CLIENT_PROGRAM
set -u
src=$1 program=$2
fail=0
libs=$(ldd "$program") || { echo "ldd $program failed"; exit 1; }
if grep -E 'libcaf|liblmdb|libjemalloc' <<<"$libs"; then
  echo "FAIL: $program links a node library (above)"; fail=1
fi
grep -q 'libcapnp-rpc' <<<"$libs" || { echo "FAIL: $program does not link Cap'n Proto RPC: is it the client program?"; fail=1; }
if grep -nE '#include [<"](caf/|lmdb\.h|actors/|persistence/|cluster/|gateway/|harness/)' \
     "$src"/client/*.hpp "$src"/client/*.cpp "$src"/protocol/*.hpp "$src"/protocol/*.cpp; then
  echo "FAIL: the client library or the protocol includes a node layer (above)"; fail=1
fi
[ $fail = 0 ] && echo "client_layering: $program links $(grep -c '=>' <<<"$libs") libraries, none of CAF/LMDB/jemalloc; client/ and protocol/ include no node layer"
exit $fail
