#!/usr/bin/env bash
# Static security checks of terraform/ with checkov (PyPI, pinned), installed
# into .tools/checkov on first use. Every check we skip is skipped inline in
# the .tf file, next to the resource, with the reason
# (`# checkov:skip=CKV_AWS_…: why`), so a skip is reviewed with the code it
# excuses. Usage: scripts/checkov.sh [extra checkov flags]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
CHECKOV_VERSION=3.3.30
venv="$root/.tools/checkov"

if ! [ -x "$venv/bin/checkov" ] || ! "$venv/bin/python" -m pip show checkov 2>/dev/null | grep -qx "Version: $CHECKOV_VERSION"; then
  echo "checkov: installing checkov==$CHECKOV_VERSION into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

# --framework terraform: only the HCL (no provider download is needed).
# --download-external-modules false: every module is local.
# Negative fixtures under testdata/ are deliberately broken copies for the Go
# checks, so they are excluded.
# Offline: no update check, no download of Prisma Cloud guidelines/mappings.
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE
exec "$venv/bin/checkov" --quiet --compact \
  --framework terraform \
  --download-external-modules false \
  --skip-download \
  --skip-path 'testdata' \
  -d "$root/terraform" "$@"
