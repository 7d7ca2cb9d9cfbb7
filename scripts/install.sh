#!/usr/bin/env bash
# The one install recipe: the dev environment, CI and the container image all run this, so what
# the tests prove is what the image runs. Versions are pinned by requirements/constraints.txt.
#
#   scripts/install.sh [--dev] [--cuda]
#     --dev    editable install with the test dependencies, plus the client package
#     --cuda   JAX with its CUDA plugin from PyPI (GPU hosts)
# Uses $PYTHON (default: python3) and installs into that interpreter's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=()
editable=()
client=()
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(test); editable=(-e); client=(-e ./client) ;;
    --cuda) extras+=(cuda) ;;
    *) echo "install.sh: unknown option '$arg' (expected --dev, --cuda)" >&2; exit 2 ;;
  esac
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
"$PYTHON" -m pip install --disable-pip-version-check --no-cache-dir -q \
  -c requirements/constraints.txt "${editable[@]}" "$spec" "${client[@]}"
