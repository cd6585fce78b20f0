#!/usr/bin/env bash
# Runs every suite: the cmocka unit tests, then the integration tests (pytest,
# against the real binary in $SIGVISOR), once with the default epoll loop and once
# with --loop io_uring. Ends with one line:
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
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out/$name.log" | tail -1)
	p=${p:-0} f=${f:-0} s=${s:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # crashed or timed out before cmocka could count
	fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	printf '  %-28s %3d passed, %d failed, %d skipped\n' "$name" "$p" "$f" "$s"
	[ "$f" -ne 0 ] && cat "$out/$name.log"
done

# Debian's python3 (not a pyenv shim): python3-pytest is installed for it.
PY=/usr/bin/python3

# integration NAME [ARGS...]: one pytest run of the whole integration suite, its
# counts added to the totals.
integration() {
	local name=$1 ip if is
	shift
	$PY -m pytest -p no:cacheprovider -q -rfEs --timeout=120 --junitxml="$out/$name.xml" \
		test/integration "$@"
	read -r ip if is < <($PY - "$out/$name.xml" <<'PYEOF'
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
}

echo "== integration tests"
integration epoll "$@"

# The same suite again with every sigvisor on the io_uring loop (conftest.py adds
# --loop io_uring), so both backends pass the same behaviour. Where the kernel or a
# seccomp profile refuses io_uring the pass is one skip, and a failure under CI=true.
echo "== integration tests, --loop io_uring"
if why=$($PY -c '
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 2, params)  # io_uring_setup, x86_64
if fd < 0:
    print(os.strerror(ctypes.get_errno()))
    sys.exit(1)
os.close(fd)
'); then
	SIGVISOR_TEST_LOOP=io_uring integration io_uring "$@"
elif [ "${CI:-}" = true ]; then
	echo "io_uring is unavailable under CI=true: $why"
	failed=$((failed + 1))
else
	echo "skipped: io_uring is unavailable here: $why"
	skipped=$((skipped + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
