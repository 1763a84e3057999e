#!/usr/bin/env bash
# Checks libflick's C ABI (the flick_* functions and the C types they reach) against the
# committed baseline abi/libflick.abi, with libabigail (Debian's abigail-tools).
#
#   scripts/abi-check.sh [BUILD_DIR]            fails on any change but added functions
#   scripts/abi-check.sh --update [BUILD_DIR]   rewrites the baseline; only with a version bump
#
# BUILD_DIR (default build/dev) holds lib/libflick.so, built with debug info (the dev preset).
# abidiff sets "incompatible" (8) only for removed symbols; a changed public struct is an
# "ABI change" (4) for a human to judge, so every change but an addition fails here: judge it,
# and if it is compatible after all (a field appended to a versioned options struct), update
# the baseline together with the version bump. Exit status 77: no debug info to check.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
update=0
if [[ ${1:-} == --update ]]; then
  update=1
  shift
fi
build=$(cd "${1:-$src/build/dev}" && pwd)
lib=$build/lib/libflick.so
baseline=$src/abi/libflick.abi
suppressions=$src/abi/c-abi.suppr

die() {
  echo "abi-check: $*" >&2
  exit 1
}
for tool in abidw abidiff readelf; do
  command -v $tool >/dev/null || die "$tool not found (scripts/install-deps.sh)"
done
[[ -e $lib ]] || die "no $lib: build the flick target first"
if ! readelf -S -W "$lib" | grep -q '\.debug_info'; then
  echo "abi-check: $lib has no debug info: the ABI can only be read from a build with -g" >&2
  exit 77
fi

# Every exported flick_* function carries a version node of capi/flick.map.
unversioned=$(readelf --dyn-syms -W "$lib" |
  awk '$5 == "GLOBAL" && $7 != "UND" && $8 ~ /^flick_/ && $8 !~ /@/ { printf "%s ", $8 }')
[[ -z $unversioned ]] || die "flick_* symbols without a version (capi/flick.map): $unversioned"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The dump is kept free of this machine: no corpus, compilation-dir or source paths, no line
# numbers (the header may move around), no DT_NEEDED list, type ids by hash; translation
# units left empty by the suppressions are dropped.
dump() {
  abidw --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed \
    --exported-interfaces-only --type-id-style hash --suppressions "$suppressions" "$lib" |
    awk -v prefix="path='$src/" '
      { i = index($0, prefix); if (i) $0 = substr($0, 1, i + 5) substr($0, i + length(prefix)) }
      /^  <abi-instr / { held = $0; next }
      held != "" && /^  <\/abi-instr>/ { held = ""; next }
      held != "" { print held; held = "" }
      { print }'
}
dump >"$work/current.abi"
if grep -q -e "$src" -e "$build" "$work/current.abi"; then
  echo "abi-check: the dump still holds a path of this machine:" >&2
  grep -e "$src" -e "$build" "$work/current.abi" | head -5 >&2
  exit 1
fi

if ((update)); then
  cp "$work/current.abi" "$baseline"
  echo "abi-check: wrote ${baseline#"$src"/} ($(grep -c '<elf-symbol ' "$baseline") symbols)"
  exit 0
fi

[[ -e $baseline ]] || die "no baseline ${baseline#"$src"/}: run with --update"
diff_status=0
abidiff --no-default-suppression --no-added-syms "$baseline" "$work/current.abi" >"$work/changes" ||
  diff_status=$?
if ((diff_status & 3)); then
  cat "$work/changes" >&2
  die "abidiff failed (status $diff_status)"
fi
if ((diff_status)); then
  cat "$work/changes"
  if ((diff_status & 8)); then
    echo "abi-check: INCOMPATIBLE change to the C ABI (above) against ${baseline#"$src"/}" >&2
  else
    echo "abi-check: the C ABI changed (above): judge it; only with a version bump may the" \
      "baseline be updated (scripts/abi-check.sh --update)" >&2
  fi
  exit 1
fi
added=0
abidiff --no-default-suppression "$baseline" "$work/current.abi" >"$work/added" || added=$?
if ((added)); then
  cat "$work/added"
  echo "abi-check: compatible: additions only (the baseline takes them with the next --update)"
else
  echo "abi-check: the C ABI matches ${baseline#"$src"/}"
fi
