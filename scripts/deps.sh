#!/usr/bin/env bash
# Make sure the Debian packages a make target needs are installed.
# Usage: scripts/deps.sh run|test|check|bench|kernels
# As root, missing packages are installed with apt-get; otherwise the exact
# apt-get line is printed and we stop, so nothing is ever installed behind a
# non-root user's back.
set -euo pipefail

run_pkgs=(gcc make libc6-dev musl-tools libinih-dev liburing-dev clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev)
test_pkgs=("${run_pkgs[@]}" wrk gunicorn strace libcmocka-dev libsystemd-dev systemd python3 python3-pytest python3-pytest-timeout curl util-linux procps man-db valgrind tini catatonit dumb-init)
check_pkgs=("${test_pkgs[@]}" clang-format cppcheck clang lld libclang-rt-14-dev)
# Kernel packages, arm64's busybox and -dev packages are downloaded by
# test/kernels/debian.sh, never installed (arm64 through multiarch would upgrade the
# host's amd64 libraries); the arm64 guests' binaries are cross-built.
kernels_pkgs=("${run_pkgs[@]}" qemu-system-x86 qemu-system-arm busybox-static cpio curl xz-utils
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
bench_pkgs=("${run_pkgs[@]}" gunicorn wrk strace python3 tini dumb-init catatonit gnuplot-nox nginx-light iproute2 uwsgi-core uwsgi-plugin-python3)

case "${1:-}" in
run) pkgs=("${run_pkgs[@]}") ;;
test) pkgs=("${test_pkgs[@]}") ;;
check) pkgs=("${check_pkgs[@]}") ;;
bench) pkgs=("${bench_pkgs[@]}") ;;
kernels) pkgs=("${kernels_pkgs[@]}") ;;
*)
	echo "usage: $0 run|test|check|bench|kernels" >&2
	exit 2
	;;
esac

missing=()
for p in "${pkgs[@]}"; do
	# dpkg-query is fast and needs no network; only what is missing goes to apt.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "sigvisor: missing Debian packages. Install them with:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "sigvisor: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
