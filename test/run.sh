#!/usr/bin/env bash
# Runs every suite: the cmocka unit tests, then the integration tests (pytest,
# against the real binary in $SIGVISOR). Ends with one line:
#   N passed, N failed, N skipped
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export SIGVISOR=${SIGVISOR:-$PWD/$BUILD/sigvisor}
passed=0 failed=0 skipped=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== unit tests"
for t in "$BUILD"/test/test_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	# cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), ..."
	timeout 60 "$t" >"$out/$name.log" 2>&1
	rc=$?
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out/$name.log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out/$name.log" | tail -1)
	p=${p:-0} f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # crashed or timed out before cmocka could count
	fi
	passed=$((passed + p)) failed=$((failed + f))
	printf '  %-28s %3d passed, %d failed\n' "$name" "$p" "$f"
	[ "$f" -ne 0 ] && cat "$out/$name.log"
done

echo "== integration tests"
# Debian's python3 (not a pyenv shim): python3-pytest is installed for it.
PY=/usr/bin/python3
$PY -m pytest -p no:cacheprovider -q -rfEs --timeout=120 --junitxml="$out/junit.xml" \
	test/integration "$@"
read -r ip if is < <($PY - "$out/junit.xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1, 0)  # pytest died before writing its report
    sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
s = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - s, f, s)
PYEOF
)
passed=$((passed + ip)) failed=$((failed + if)) skipped=$((skipped + is))

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
