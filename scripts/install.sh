#!/usr/bin/env bash
# The one install recipe: the dev environment, CI and the container image all run this, so what
# the tests prove is what the image runs. Versions are pinned by requirements/constraints.txt.
#
#   scripts/install.sh [--dev] [--cuda | --device=cpu|cuda]
#     --dev            editable install with the test dependencies, plus the client package
#     --cuda           JAX with its CUDA plugin and CUDA libraries from PyPI (GPU hosts)
#     --device=NAME    the same choice by name: cpu (the default) or cuda; the image's DEVICE
#                      build argument is passed here as it is
# Uses $PYTHON (default: python3) and installs into that interpreter's environment. pip's cache
# is used as configured (the image keeps it in a build cache mount, outside every layer).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=()
editable=()
client=()
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(test); editable=(-e); client=(-e ./client) ;;
    --cuda|--device=cuda) extras+=(cuda) ;;
    --device=cpu) ;;
    *) echo "install.sh: unknown option '$arg' (expected --dev, --cuda, --device=cpu|cuda)" >&2
       exit 2 ;;
  esac
done
spec="."
if [ ${#extras[@]} -gt 0 ]; then spec=".[$(IFS=,; echo "${extras[*]}")]"; fi
"$PYTHON" -m pip install --disable-pip-version-check -q \
  -c requirements/constraints.txt "${editable[@]}" "$spec" "${client[@]}"
