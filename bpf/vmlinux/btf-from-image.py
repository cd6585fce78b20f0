#!/usr/bin/env python3
"""Write the kernel's BTF (the blob /sys/kernel/btf/vmlinux serves) found inside a
kernel image file: x86's bzImage (its payload decompressed), arm64's Image (gzipped or
plain), or an uncompressed vmlinux. Usage: btf-from-image.py IMAGE OUT.btf"""
import gzip
import lzma
import struct
import subprocess
import sys
import zlib

# struct btf_header: magic 0xeB9F, version 1, flags 0, hdr_len 24.
MAGIC = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"


def decompress(blob):
    """The compressed stream that starts earliest in blob (extract-vmlinux's way)."""
    found = []
    for magic, how in ((b"\x1f\x8b\x08", "gzip"), (b"\xfd7zXZ\x00", "xz"),
                       (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x02\x21\x4c\x18", "lz4")):
        at = blob.find(magic)
        if at >= 0:
            found.append((at, how))
    if not found:
        sys.exit("btf-from-image: no compressed payload found")
    at, how = min(found)
    part = blob[at:]
    if how == "gzip":
        return zlib.decompressobj(31).decompress(part)
    if how == "xz":
        return lzma.LZMADecompressor().decompress(part)
    cmd = ["zstd", "-dcq"] if how == "zstd" else ["lz4", "-dcq"]
    # The kernel appends the size after the stream: the tool may complain of it.
    return subprocess.run(cmd, input=part, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=False).stdout


def main():
    image, out = sys.argv[1], sys.argv[2]
    data = open(image, "rb").read()
    if data[:2] == b"\x1f\x8b":  # arm64's vmlinuz: a gzipped Image
        data = gzip.decompress(data)
    elif data[0x202:0x206] == b"HdrS":  # x86 bzImage: setup, then the payload
        setup = ((data[0x1F1] or 4) + 1) * 512
        off, length = struct.unpack_from("<II", data, 0x248)
        data = decompress(data[setup + off:setup + off + length])
    best = b""
    at = data.find(MAGIC)
    while at >= 0:
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, at + 8)
        size = 24 + max(type_off + type_len, str_off + str_len)
        if size > len(best) and at + size <= len(data):
            best = data[at:at + size]
        at = data.find(MAGIC, at + 1)
    if len(best) < 1 << 20:
        sys.exit("btf-from-image: no kernel BTF in %s (CONFIG_DEBUG_INFO_BTF?)" % image)
    open(out, "wb").write(best)


main()
