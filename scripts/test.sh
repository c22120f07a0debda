#!/usr/bin/env bash
# Installs the dependencies, builds shardflow with -Wall -Wextra -Werror and
# runs the whole test suite with ctest; then the same suite under
# AddressSanitizer + UBSan (skip with SF_TEST_ASAN=0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/env.sh
cmake --preset ci >/dev/null
cmake --build --preset ci
ctest --preset ci -j2
if [ "${SF_TEST_ASAN:-1}" != "0" ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan
  ctest --preset asan -j2
fi
echo "test: all tests passed"
