#!/bin/bash
# The C++ client library links the protocol and Cap'n Proto only (issue 19): a client
# program carries no CAF, no LMDB, no jemalloc, and no header of client/ or protocol/
# reaches into the node's layers (actors/, persistence/, cluster/, gateway/) or CAF.
#   client_layering.sh SOURCE_DIR CLIENT_PROGRAM CLIENT_ARCHIVE PROTOCOL_ARCHIVE
# The archives' own symbols are checked too: a client program links with --as-needed and
# pulls only the objects it uses, so its ldd alone would miss a CAF call elsewhere.
set -u
src=$1 program=$2 client_lib=$3 protocol_lib=$4
fail=0
libs=$(ldd "$program") || { echo "ldd $program failed"; exit 1; }
if grep -E 'libcaf|liblmdb|libjemalloc' <<<"$libs"; then
  echo "FAIL: $program links a node library (above)"; fail=1
fi
grep -q 'libcapnp-rpc' <<<"$libs" || { echo "FAIL: $program does not link Cap'n Proto RPC: is it the client program?"; fail=1; }
# Every symbol the two archives need from Holdfast they define themselves, and none is CAF's or LMDB's.
defined=$(nm -C --defined-only "$client_lib" "$protocol_lib" 2>/dev/null | awk 'NF >= 3 {$1=""; $2=""; sub(/^  /, ""); print}' | sort -u)
undefined=$(nm -C -u "$client_lib" "$protocol_lib" 2>/dev/null | awk '$1 == "U" {$1=""; sub(/^ /, ""); print}' | sort -u)
[ -n "$undefined" ] || { echo "FAIL: nm read no symbols from $client_lib $protocol_lib"; fail=1; }
if grep -E '^(caf::|mdb_|je_)' <<<"$undefined"; then
  echo "FAIL: the client library or the protocol calls CAF, LMDB or jemalloc (above)"; fail=1
fi
missing=$(comm -23 <(grep '^holdfast::' <<<"$undefined") <(grep '^holdfast::' <<<"$defined"))
if [ -n "$missing" ]; then
  echo "$missing"
  echo "FAIL: the client library or the protocol needs Holdfast code they do not hold (above)"; fail=1
fi
if grep -nE '#[[:space:]]*include[[:space:]]*[<"](caf/|lmdb\.h|actors/|persistence/|cluster/|gateway/|harness/)' \
     "$src"/client/*.hpp "$src"/client/*.cpp "$src"/protocol/*.hpp "$src"/protocol/*.cpp; then
  echo "FAIL: the client library or the protocol includes a node layer (above)"; fail=1
fi
[ $fail = 0 ] && echo "client_layering: $program links $(grep -c '=>' <<<"$libs") libraries, none of CAF/LMDB/jemalloc; the client and protocol archives need no node code; client/ and protocol/ include no node layer"
exit $fail
