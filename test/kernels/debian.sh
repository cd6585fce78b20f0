#!/usr/bin/env bash
# Debian packages for test/kernels and bpf/vmlinux, fetched with curl from Debian's
# archive into a cache, never installed and never added to this machine's apt
# sources (an arm64 package installed through multiarch would upgrade the host's amd64
# libraries). Each suite's package index is read from its main and security archives.
#
#   debian.sh deb SUITE ARCH PACKAGE       the .deb of PACKAGE (newest that downloads)
#   debian.sh newest SUITE ARCH REGEX      the newest package whose name matches REGEX
#   debian.sh kernel SUITE ARCH REGEX      the kernel image of the newest such package
#                                          that downloads (x86's bzImage, arm64's
#                                          gzipped Image); a cached one is kept
# Prints a path under $DEBIAN_CACHE (default build/kernels); the index is fetched again
# when older than a day (the older one is used if that fails). DEBIAN_MIRROR overrides
# http://deb.debian.org.
set -euo pipefail
cache=${DEBIAN_CACHE:-build/kernels}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# The mirror cannot be read: an older index still names the kernels in the cache.
stale() { # stale INDEX
	if [ -s "$1" ]; then
		echo "debian.sh: cannot refresh $(basename "$1"), using the one of $(date -r "$1" +%F)" >&2
		echo "$1"
	else
		echo "debian.sh: cannot fetch the package index $(basename "$1")" >&2
		exit 1
	fi
}

# "name version base/filename" of every package of SUITE/ARCH, main and security.
index() {
	local suite=$1 arch=$2 out=$cache/index-$1-$2 archive dist tmp
	if [ -s "$out" ] && [ -z "$(find "$out" -mmin +1440)" ]; then
		echo "$out"
		return
	fi
	tmp=$(mktemp "$out.XXXXXX")
	for archive in "debian $suite" "debian-security $suite-security"; do
		dist=${archive#* }
		curl -fsSL --retry 3 "$mirror/${archive% *}/dists/$dist/main/binary-$arch/Packages.xz" |
			xz -dc | awk -v base="${archive% *}" '
				/^Package: / { p = $2 }
				/^Version: / { v = $2 }
				/^Filename: / { f = $2 }
				/^$/ { if (p != "") print p, v, base "/" f; p = v = f = "" }' >>"$tmp" ||
			{ [ "$dist" != "$suite" ] || { rm -f "$tmp"; stale "$out"; return; }; }
	done
	mv "$tmp" "$out"
	echo "$out"
}

# Download the first of the index lines on stdin ("name version path", best first)
# that the mirror serves: the security archive lists packages it may not serve (Debian
# 11's LTS updates), then the main archive's newest is taken. Prints "name path".
fetch_first() {
	local name version path file
	while read -r name version path; do
		file=$cache/$(basename "$path")
		if [ ! -s "$file" ]; then
			curl -fsSL --retry 3 -o "$file.tmp" "$mirror/$path" 2>/dev/null ||
				{ rm -f "$file.tmp"; continue; }
			mv "$file.tmp" "$file"
		fi
		echo "$name $file"
		return 0
	done
	return 1
}

deb() { # deb SUITE ARCH PACKAGE
	local got
	got=$(awk -v p="$3" '$1 == p' "$(index "$1" "$2")" | sort -rV -k2,2 | fetch_first) ||
		{ echo "debian.sh: cannot download $3 from $1/$2" >&2; exit 1; }
	echo "${got#* }"
}

# Newest first by name (the ABI number or upstream version is in it).
candidates() { # candidates SUITE ARCH REGEX
	awk -v rx="$3" '$1 ~ rx' "$(index "$1" "$2")" | sort -rV -k1,1 -k2,2
}

newest() { # newest SUITE ARCH REGEX
	candidates "$@" | head -1 | awk '{print $1}'
}

kernel() { # kernel SUITE ARCH REGEX
	local pkg image got c
	# A kernel already cached is taken without asking the mirror.
	for c in $(candidates "$@" | awk '{print $1}'); do
		if [ -s "$cache/$c.image" ]; then
			echo "$cache/$c.image"
			return
		fi
	done
	got=$(candidates "$@" | fetch_first) ||
		{ echo "debian.sh: cannot download a package like $3 from $1/$2" >&2; exit 1; }
	pkg=${got%% *}
	image=$cache/$pkg.image
	dpkg-deb --fsys-tarfile "${got#* }" | tar -xO --wildcards './boot/vmlinuz-*' >"$image.tmp"
	mv "$image.tmp" "$image"
	rm -f "${got#* }"
	echo "$image"
}

case "${1:-}" in
deb | newest | kernel)
	[ $# -eq 4 ] || { echo "usage: $0 $1 SUITE ARCH ARG" >&2; exit 2; }
	"$@"
	;;
*)
	echo "usage: $0 deb|newest|kernel SUITE ARCH ARG" >&2
	exit 2
	;;
esac
