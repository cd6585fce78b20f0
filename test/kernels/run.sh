#!/usr/bin/env bash
# make test-kernels: do the eBPF probes load and count right on the kernels that
# Kubernetes nodes run, x86_64 and arm64, not only on this machine's? One row per kernel:
#   - the host kernel: test/kernels/kcheck run directly;
#   - Debian's cloud kernels, 5.10 (Debian 11) to 6.12 (Debian 13), on x86_64 and arm64
#     (the ROWS table below): the kernel image is downloaded from Debian's archive by
#     test/kernels/debian.sh (cached in $BUILD/kernels, nothing is installed), booted
#     under qemu (TCG: no KVM is needed) with a small initramfs of busybox, sigvisor and
#     kcheck, and kcheck's verdict read from the serial console. The arm64 guests run a
#     static sigvisor and kcheck cross-built with gcc-aarch64-linux-gnu against a sysroot
#     of Debian 12's arm64 -dev packages (unpacked, never installed: multiarch would
#     upgrade the host's amd64 libraries).
# kcheck checks the plain supervisor (--bpf off: start, GET, TTIN, HUP, TERM with exit
# status 0) and then the probes' exact counts with every optional part on; a kernel on
# which a probe cannot load fails with the verifier's reason (kcheck prints the tail of
# sigvisor's log). Guests run two at a time. A row that cannot run here (no qemu for its
# architecture, no cross compiler) fails under CI=true and is skipped with the reason
# otherwise. Ends with one line: "kernels: N passed, N failed" (", N skipped" if any).
#
# ROWS_MATCH=REGEX runs only the rows whose name matches (e.g. 'arm64' or '5\.10');
# KERNEL_CACHE=DIR keeps the downloads elsewhere than $BUILD/kernels (CI: across clones);
# KERNEL_IMAGES="/path/vmlinuz arm64:/path/Image ..." boots those images instead of
# Debian's (another distribution's kernel, with BTF; x86_64 unless prefixed arm64:).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SIGVISOR=${SIGVISOR:-$PWD/$BUILD/sigvisor}
KCHECK=${KCHECK:-$PWD/$BUILD/kcheck}
ROWS_MATCH=${ROWS_MATCH:-.}
PARALLEL=${PARALLEL:-2}
# Downloads (package indexes, kernels, the arm64 sysroot) are kept here between runs.
cache=${KERNEL_CACHE:-$PWD/$BUILD/kernels}
export DEBIAN_CACHE=$cache
mkdir -p "$cache"
passed=0 failed=0 skipped=0
rows=()

# The kernel table: NAME SUITE DEBIAN-ARCH PACKAGE-REGEX. A new row is one line here
# (and one in the README's table).
ROWS=(
	"x86_64 Debian 11 5.10|bullseye|amd64|^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$"
	"x86_64 Debian 12 6.1|bookworm|amd64|^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$"
	"x86_64 Debian 12 6.12|bookworm|amd64|^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$"
	"x86_64 Debian 13 6.12|trixie|amd64|^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64-unsigned$"
	"arm64 Debian 11 5.10|bullseye|arm64|^linux-image-5\.10\.0-[0-9]+-cloud-arm64-unsigned$"
	"arm64 Debian 12 6.1|bookworm|arm64|^linux-image-6\.1\.0-[0-9]+-cloud-arm64-unsigned$"
	"arm64 Debian 13 6.12|trixie|arm64|^linux-image-6\.12\.[0-9]+\+deb13-cloud-arm64-unsigned$"
)
# The arm64 binaries' sysroot: Debian 12's -dev packages of what sigvisor links.
SYSROOT_SUITE=bookworm
SYSROOT_DEBS=(libbpf-dev libelf-dev zlib1g-dev libzstd-dev liburing-dev libinih-dev)

row() { # row VERDICT NAME DETAIL
	rows+=("$(printf '  %-4s %-56s %s' "$1" "$2" "$3")")
	case $1 in
	PASS) passed=$((passed + 1)) ;;
	SKIP) skipped=$((skipped + 1)) ;;
	*) failed=$((failed + 1)) ;;
	esac
}

# A row this machine cannot run: a failure in CI, a skip with the reason elsewhere.
cannot() { # cannot NAME WHY
	if [ "${CI:-}" = true ]; then
		row FAIL "$1" "$2"
	else
		row SKIP "$1" "$2"
	fi
}

elapsed() { # elapsed START_NS
	awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f s", (b - a) / 1e9 }'
}

# --- the host kernel ---------------------------------------------------------------
host() {
	local work pin t0 out
	work=$(mktemp -d /tmp/kcheck-XXXXXX)
	pin=/sys/fs/bpf/kcheck-$$
	t0=$(date +%s%N)
	out=$("$KCHECK" run "$SIGVISOR" "$pin" "$work/run" 2>&1)
	echo "$out"
	rm -rf "$work"
	[ -d "$pin" ] && rm -rf "$pin"
	if grep -q "^kcheck: PASS" <<<"$out"; then
		row PASS "$(uname -m) $(uname -r) (host)" "$(elapsed "$t0")"
	else
		row FAIL "$(uname -m) $(uname -r) (host)" \
			"$(grep -m1 '^kcheck: FAIL' <<<"$out" | cut -d: -f3-)"
	fi
}

# --- the guests' binaries and initramfs ----------------------------------------------
# arm64: sigvisor and kcheck cross-built statically (one file each, nothing to find in
# the initramfs) against the sysroot; echoes the build directory.
arm64_build() {
	local sysroot=$cache/sysroot-arm64 p deb out=$PWD/$BUILD/arm64
	if [ ! -e "$sysroot/.done" ]; then
		rm -rf "$sysroot"
		mkdir -p "$sysroot"
		for p in "${SYSROOT_DEBS[@]}"; do
			deb=$(test/kernels/debian.sh deb "$SYSROOT_SUITE" arm64 "$p") || return 1
			dpkg-deb -x "$deb" "$sysroot" || return 1
		done
		touch "$sysroot/.done"
	fi
	# glibc's warnings about getpwnam & co. in a static binary: the guest needs none.
	# A make of its own (not the caller's MAKEFLAGS: its CC or BUILD would win).
	if ! env -u MAKEFLAGS -u MAKELEVEL make -j"$(nproc)" --no-print-directory BUILD="$out" \
		CC=aarch64-linux-gnu-gcc \
		CPPFLAGS="-I$sysroot/usr/include" \
		LDFLAGS="-static -L$sysroot/usr/lib/aarch64-linux-gnu" \
		LDLIBS="-linih -luring -lbpf -lelf -lzstd -lz" \
		KCHECK_LDLIBS="-lbpf -lelf -lzstd -lz" "$out/sigvisor" "$out/kcheck" \
		>"$cache/arm64-build.log" 2>&1; then
		tail -20 "$cache/arm64-build.log" >&2
		return 1
	fi
	echo "$out"
}

# initramfs ARCH SIGVISOR KCHECK BUSYBOX: busybox, sigvisor, kcheck (and their shared
# libraries and the dynamic loader, for the host's dynamic binaries); /init runs kcheck
# and powers off. Echoes its path.
initramfs() {
	local arch=$1 sigvisor=$2 kcheck=$3 busybox=$4 root=$cache/initramfs-$1 lib
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc}
	cp "$busybox" "$root/bin/busybox"
	cp "$sigvisor" "$root/sigvisor"
	cp "$kcheck" "$root/kcheck"
	if [ "$arch" = x86_64 ]; then
		for lib in $(ldd "$sigvisor" "$kcheck" |
			awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*[^:]$/ {print $1}' | sort -u); do
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	fi
	cat >"$root/init" <<'EOF'
#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mount -t tmpfs tmpfs /tmp
$bb mount -t tmpfs tmpfs /run
# sigvisor mounts bpffs on /sys/fs/bpf itself, as it does in a container.
/kcheck run /sigvisor /sys/fs/bpf/kcheck /tmp/kcheck
echo "kcheck: exit $?"
$bb poweroff -f
EOF
	chmod 755 "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$cache/initramfs-$arch.gz"
	rm -rf "$root"
	echo "$cache/initramfs-$arch.gz"
}

# busybox for arm64 guests: Debian 12's busybox-static, unpacked.
arm64_busybox() {
	local deb dir=$cache/busybox-arm64
	if [ ! -x "$dir/bin/busybox" ]; then
		deb=$(test/kernels/debian.sh deb "$SYSROOT_SUITE" arm64 busybox-static) || return 1
		rm -rf "$dir"
		dpkg-deb -x "$deb" "$dir" || return 1
	fi
	echo "$dir/bin/busybox"
}

# --- one guest: its console into OUT, the verdict read by verdict() ------------------
# -cpu max / cortex-a57: TCG emulates them (no KVM here). -smp 2: the signal counts are
# checked with a second CPU racing. 300 s: a hang is a failure, not a stuck CI.
guest() { # guest ARCH IMAGE INITRAMFS OUT
	local arch=$1 image=$2 initrd=$3 out=$4 t0
	t0=$(date +%s%N)
	case $arch in
	x86_64)
		timeout 300 qemu-system-x86_64 -nographic -no-reboot -m 768 -smp 2 -cpu max \
			-net none -kernel "$image" -initrd "$initrd" \
			-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null >"$out.raw" 2>&1
		;;
	arm64)
		timeout 300 qemu-system-aarch64 -nographic -no-reboot -M virt -cpu cortex-a57 \
			-m 768 -smp 2 -net none -kernel "$image" -initrd "$initrd" \
			-append "console=ttyAMA0 panic=-1 quiet loglevel=3" </dev/null >"$out.raw" 2>&1
		;;
	esac
	# The firmware's "Booting from ROM.." may share its line with the verdict (nothing
	# prints a newline between them): the verdict starts a line.
	tr -d '\r' <"$out.raw" | sed 's/\x1b[[?0-9;]*[a-zA-Z]//g; s/^c//' |
		sed -E 's/^.*(kcheck: (PASS|FAIL|exit))/\1/' >"$out"
	elapsed "$t0" >"$out.time"
	rm -f "$out.raw"
}

verdict() { # verdict NAME OUT
	local name=$1 out=$2
	# The firmware's banner and the kernel's power-off line are not ours to show.
	grep -E '^(kcheck|---|20[0-9][0-9]-)' "$out" | grep -v '^kcheck: exit'
	if grep -q "^kcheck: PASS" "$out"; then
		row PASS "$name (qemu)" "$(cat "$out.time")"
	elif grep -q "^kcheck: FAIL" "$out"; then
		row FAIL "$name (qemu)" "$(grep -m1 '^kcheck: FAIL' "$out" | cut -d: -f3-)"
	else
		tail -30 "$out"
		row FAIL "$name (qemu)" "no verdict on the console (boot failed or timed out)"
	fi
}

echo "== kernels: the plain supervisor and the eBPF probes, loaded and counted"
host

# What each architecture needs here, and its initramfs.
declare -A initrd=() why_not=()
if ! command -v qemu-system-x86_64 >/dev/null; then
	why_not[x86_64]="qemu-system-x86_64 is not installed (scripts/deps.sh kernels)"
elif ! busybox=$(command -v busybox); then
	why_not[x86_64]="busybox is not installed (scripts/deps.sh kernels)"
else
	initrd[x86_64]=$(initramfs x86_64 "$SIGVISOR" "$KCHECK" "$busybox")
fi
if ! command -v qemu-system-aarch64 >/dev/null; then
	why_not[arm64]="qemu-system-aarch64 is not installed (scripts/deps.sh kernels)"
elif ! command -v aarch64-linux-gnu-gcc >/dev/null; then
	why_not[arm64]="aarch64-linux-gnu-gcc is not installed (scripts/deps.sh kernels)"
elif [ -n "$(printf '%s\n' "${ROWS[@]}" ${KERNEL_IMAGES:-} | grep -E "$ROWS_MATCH" | grep arm64)" ]; then
	if ! arm64=$(arm64_build); then
		why_not[arm64]="the arm64 cross build of sigvisor and kcheck failed"
	elif ! busybox=$(arm64_busybox); then
		why_not[arm64]="cannot download Debian's busybox-static for arm64"
	else
		initrd[arm64]=$(initramfs arm64 "$arm64/sigvisor" "$arm64/kcheck" "$busybox")
	fi
fi

# The guests to boot: "ARCH|NAME|IMAGE".
guests=()
if [ -n "${KERNEL_IMAGES:-}" ]; then
	for entry in $KERNEL_IMAGES; do
		case $entry in
		arm64:*) guests+=("arm64|arm64 $(basename "${entry#arm64:}")|${entry#arm64:}") ;;
		*) guests+=("x86_64|x86_64 $(basename "$entry")|$entry") ;;
		esac
	done
else
	for r in "${ROWS[@]}"; do
		IFS='|' read -r name suite deb_arch regex <<<"$r"
		grep -qE "$ROWS_MATCH" <<<"$name" || continue
		arch=${name%% *}
		if [ -n "${why_not[$arch]:-}" ]; then
			cannot "$name" "${why_not[$arch]}"
			continue
		fi
		if ! image=$(test/kernels/debian.sh kernel "$suite" "$deb_arch" "$regex"); then
			row FAIL "$name" "cannot download a kernel like $regex from Debian $suite"
			continue
		fi
		pkg=$(basename "$image" .image)
		pkg=${pkg#linux-image-}
		guests+=("$arch|$name (${pkg%-unsigned})|$image")
	done
fi

# Two at a time: TCG is slow, and two guests keep both CPUs busy.
n=0
for g in "${guests[@]}"; do
	IFS='|' read -r arch name image <<<"$g"
	if [ -n "${why_not[$arch]:-}" ]; then
		continue
	fi
	while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do
		wait -n
	done
	guest "$arch" "$image" "${initrd[$arch]}" "$cache/console-$n" &
	n=$((n + 1))
done
wait
n=0
for g in "${guests[@]}"; do
	IFS='|' read -r arch name image <<<"$g"
	if [ -n "${why_not[$arch]:-}" ]; then
		cannot "$name" "${why_not[$arch]}"
		continue
	fi
	verdict "$name" "$cache/console-$n"
	rm -f "$cache/console-$n" "$cache/console-$n.time"
	n=$((n + 1))
done
rm -f "$cache"/initramfs-*.gz

echo "== kernels"
printf '%s\n' "${rows[@]}"
if [ "$skipped" -gt 0 ]; then
	echo "kernels: $passed passed, $failed failed, $skipped skipped"
else
	echo "kernels: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
