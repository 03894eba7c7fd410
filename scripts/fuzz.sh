#!/usr/bin/env bash
# Runs every Fuzz* target in the module briefly: go test -fuzz accepts one
# target per run, so list them and run each for the given time.
set -euo pipefail
t=${1:-10s}
cd "$(dirname "$0")/.."
found=0
while IFS= read -r f; do
  dir=$(dirname "$f")
  for name in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
    found=1
    echo "fuzz: $dir $name ($t)"
    go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "./$dir"
  done
done < <(git ls-files '*_test.go' 2>/dev/null | xargs -r grep -l '^func Fuzz' || true)
[ "$found" = 1 ] || echo "fuzz: no fuzz targets yet"
