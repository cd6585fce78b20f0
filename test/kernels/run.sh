#!/usr/bin/env bash
# make test-kernels: do the eBPF probes load and count right on the kernels that
# Kubernetes nodes run, not only on this machine's? One row per kernel:
#   - the host kernel: test/kernels/kcheck run directly;
#   - Debian 12's own kernels (the newest 6.1 and 6.12 cloud flavours in its package
#     lists): the kernel image is downloaded with apt-get (nothing is installed),
#     booted under qemu-system-x86_64 (TCG: there is no KVM here) with a small
#     initramfs of busybox, build/sigvisor, kcheck and their shared libraries, and
#     kcheck's verdict read from the serial console.
# A kernel on which a probe cannot load fails with the verifier's reason (kcheck prints
# the tail of sigvisor's log). Ends with one line: "kernels: N passed, N failed".
#
# KERNELS="6.1 6.12" picks the Debian series; KERNEL_IMAGES="/path/vmlinuz ..." boots
# those images instead (another distribution's kernel, with BTF).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SIGVISOR=${SIGVISOR:-$PWD/$BUILD/sigvisor}
KCHECK=${KCHECK:-$PWD/$BUILD/kcheck}
KERNELS=${KERNELS:-6.1 6.12}
cache=$PWD/$BUILD/kernels
mkdir -p "$cache"
passed=0 failed=0
rows=()

row() { # row VERDICT KERNEL DETAIL
	rows+=("$(printf '  %-4s %-34s %s' "$1" "$2" "$3")")
	if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
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
		row PASS "$(uname -r) (host)" "$(elapsed "$t0")"
	else
		row FAIL "$(uname -r) (host)" "$(grep -m1 '^kcheck: FAIL' <<<"$out" | cut -d: -f3-)"
	fi
}

# --- Debian kernels under qemu -----------------------------------------------------
# The newest package of a series in the package lists, e.g. 6.1 ->
# linux-image-6.1.0-57-cloud-amd64-unsigned. Lists a fresh machine lacks are fetched.
newest_package() {
	local series=$1 rx name
	case $series in
	6.1) rx='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
	*) rx="^linux-image-${series//./\\.}\\.[0-9]+\\+deb[0-9]+-cloud-amd64-unsigned\$" ;;
	esac
	name=$(apt-cache search --names-only "$rx" | awk '{print $1}' | sort -V | tail -1)
	if [ -z "$name" ]; then
		apt-get update -qq >/dev/null 2>&1
		name=$(apt-cache search --names-only "$rx" | awk '{print $1}' | sort -V | tail -1)
	fi
	echo "$name"
}

# The kernel image of package $1, cached under $cache.
kernel_image() {
	local pkg=$1 deb
	if [ ! -s "$cache/$pkg.vmlinuz" ]; then
		(cd "$cache" && apt-get download -o APT::Sandbox::User=root "$pkg" >/dev/null 2>&1) ||
			return 1
		deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | head -1)
		[ -n "$deb" ] || return 1
		dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards './boot/vmlinuz-*' \
			>"$cache/$pkg.vmlinuz.tmp" && mv "$cache/$pkg.vmlinuz.tmp" "$cache/$pkg.vmlinuz"
		rm -f "$deb"
	fi
	echo "$cache/$pkg.vmlinuz"
}

# busybox, sigvisor, kcheck, their libraries and the dynamic loader; /init runs kcheck
# and powers off.
initramfs() {
	local root=$cache/initramfs lib
	rm -rf "$root"
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc}
	cp /bin/busybox "$root/bin/busybox"
	cp "$SIGVISOR" "$root/sigvisor"
	cp "$KCHECK" "$root/kcheck"
	for lib in $(ldd "$SIGVISOR" "$KCHECK" | awk '$3 ~ /^\// {print $3} $1 ~ /^\/.*[^:]$/ {print $1}' |
		sort -u); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
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
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$cache/initramfs.gz"
}

guest() { # guest NAME VMLINUZ
	local name=$1 image=$2 t0 out
	t0=$(date +%s%N)
	# -cpu max: the newest CPU TCG emulates (the cloud kernels want x86-64-v1 only, but
	# more features mean fewer emulated fallbacks). 600 s: a hang is a failure, not a
	# stuck CI. The firmware's "Booting from ROM.." may share its line with the
	# verdict (nothing prints a newline between them): the verdict starts a line.
	out=$(timeout 600 qemu-system-x86_64 -nographic -no-reboot -m 768 -smp 2 -cpu max \
		-net none \
		-kernel "$image" -initrd "$cache/initramfs.gz" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null 2>&1 |
		tr -d '\r' | sed 's/\x1b[[?0-9;]*[a-zA-Z]//g; s/^c//' |
		sed -E 's/^.*(kcheck: (PASS|FAIL|exit))/\1/')
	# The firmware's banner and the kernel's power-off line are not ours to show.
	grep -E '^(kcheck|---|20[0-9][0-9]-)' <<<"$out" | grep -v '^kcheck: exit'
	if grep -q "^kcheck: PASS" <<<"$out"; then
		row PASS "$name (qemu)" "$(elapsed "$t0")"
	elif grep -q "^kcheck: FAIL" <<<"$out"; then
		row FAIL "$name (qemu)" "$(grep -m1 '^kcheck: FAIL' <<<"$out" | cut -d: -f3-)"
	else
		echo "$out" | tail -30
		row FAIL "$name (qemu)" "no verdict on the console (boot failed or timed out)"
	fi
}

echo "== kernels: the eBPF probes, loaded and counted"
host
if ! command -v qemu-system-x86_64 >/dev/null; then
	row FAIL "qemu" "qemu-system-x86_64 is not installed (scripts/deps.sh kernels)"
else
	initramfs
	images=()
	if [ -n "${KERNEL_IMAGES:-}" ]; then
		for image in $KERNEL_IMAGES; do images+=("$(basename "$image")=$image"); done
	else
		for series in $KERNELS; do
			pkg=$(newest_package "$series")
			if [ -z "$pkg" ]; then
				row FAIL "Debian $series" "no such kernel package in the package lists"
				continue
			fi
			if ! image=$(kernel_image "$pkg"); then
				row FAIL "${pkg#linux-image-}" "cannot download $pkg"
				continue
			fi
			name=${pkg#linux-image-}
			images+=("${name%-unsigned}=$image")
		done
	fi
	for entry in "${images[@]}"; do
		guest "${entry%%=*}" "${entry#*=}"
	done
fi

echo "== kernels"
printf '%s\n' "${rows[@]}"
echo "kernels: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
