#!/usr/bin/env bash
# Runs the transport tests that need TIPC and SCTP in a real Linux kernel:
# a stock Debian kernel booted under qemu's software emulation, with an
# initramfs of busybox, the kernel's tipc/sctp modules, and our binaries.
#
#   tests/kernel/run.sh
#
# Needs the release build (make check does it first). Fails loudly unless
# the guest reports that every test passed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# cargo reads a relative CARGO_TARGET_DIR from the directory it runs in.
target=$(realpath -m "${CARGO_TARGET_DIR:-$top/target}")
export CARGO_TARGET_DIR=$target
cd "$top"
cache=${NMDB_KERNEL_CACHE:-$HOME/.cache/nmdb/kernel}
timeout_s=${NMDB_KERNEL_TIMEOUT:-900}

"$top/scripts/deps.sh" kernel

# 1. The kernel: Debian's current linux-image-amd64, unpacked (not installed).
if [ ! -f "$cache/vmlinux" ]; then
    echo "kernel: fetching Debian's linux-image-amd64"
    rm -rf "$cache" && mkdir -p "$cache/debs"
    # A fresh machine may have no package lists yet.
    (cd "$cache/debs" && apt-get download linux-image-amd64 2>/dev/null) ||
        { apt-get update -qq && (cd "$cache/debs" && apt-get download linux-image-amd64 2>/dev/null); } ||
        { echo "kernel: cannot download linux-image-amd64 (apt-get download)" >&2; exit 1; }
    image=$(dpkg-deb -f "$cache"/debs/linux-image-amd64_*.deb Depends | grep -o 'linux-image-[0-9][^ ,]*' | head -1)
    (cd "$cache/debs" && apt-get download "$image" 2>/dev/null)
    dpkg -x "$cache"/debs/linux-image-[0-9]*.deb "$cache/root"
    python3 "$here/extract-vmlinux.py" "$cache"/root/boot/vmlinuz-* "$cache/vmlinux.tmp"
    mv "$cache/vmlinux.tmp" "$cache/vmlinux"
    rm -rf "$cache/debs"
fi
kver=$(ls "$cache/root/lib/modules")
moddir=$cache/root/lib/modules/$kver/kernel

# 2. The guest's files.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,proc,sys,dev,tmp,modules,guest}
cp /bin/busybox "$stage/bin/busybox"
for m in crypto/crc32c_generic net/ipv4/udp_tunnel net/ipv6/ip6_udp_tunnel net/tipc/tipc lib/libcrc32c net/sctp/sctp; do
    cp "$moddir/$m.ko" "$stage/modules/"
done

# Copies the shared libraries a program needs (the loader, libc, libgcc_s,
# libstdc++ for RocksDB) to the same paths in the guest.
copy_libs_of() {
    ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        [ -f "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

# Copies a program to the path `dest` in the guest, with its libraries.
copy_with_libs() {
    local f=$1 dest=$2
    mkdir -p "$stage$(dirname "$dest")"
    # Debug information is most of a RocksDB binary; the guest runs in RAM.
    objcopy --strip-debug "$f" "$stage$dest"
    copy_libs_of "$f"
}

# C programs against the generated header and the static library.
for prog in "$here/guest_api.c" "$top/tests/c/guide_example.c"; do
    out=$stage/guest/$(basename "$prog" .c)
    cc -std=c99 -Wall -Wextra -Werror -I "$top/include" -I "$top/tests/c" "$prog" \
        "$target/release/libnmdb.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -o "$out"
    copy_libs_of "$out"
done
cp "$here/guest-capi.sh" "$stage/guest/"

# The Rust test binaries that exercise the kernel transports. Every program
# goes to a path of the guest's own (/guest/bin, /guest/tests): the host's
# paths may be relative, or under /tmp, which the guest mounts over.
mapfile -t tests < <(cd "$top" && cargo test --release --workspace --test kernel_transports --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
[ ${#tests[@]} -gt 0 ] || { echo "kernel: no test binary built" >&2; exit 1; }
for prog in "$target/release/nmdb" "$target/release/nmdb-stats"; do
    [ -x "$prog" ] || { echo "kernel: $prog not built (run cargo build --release --workspace)" >&2; exit 1; }
    copy_with_libs "$prog" "/guest/bin/$(basename "$prog")"
done
for t in "${tests[@]}"; do copy_with_libs "$t" "/guest/tests/$(basename "$t")"; done
{
    echo '#!/bin/sh'
    echo 'set -u'
    echo 'status=0'
    # The Rust tests start the server named here, not the host path they
    # were built with.
    echo 'export NMDB_BIN=/guest/bin/nmdb'
    for t in "${tests[@]}"; do
        echo "echo \"guest: running $(basename "$t")\""
        echo "/guest/tests/$(basename "$t") --include-ignored --test-threads=1 || status=1"
    done
    echo 'echo "guest: running the C API over TIPC, SCTP and all four transports"'
    echo "/guest/guest-capi.sh /guest/bin/nmdb /guest/bin/nmdb-stats || status=1"
    echo 'exit $status'
} > "$stage/guest/run-tests.sh"
cp "$here/init" "$stage/init"
chmod +x "$stage/init" "$stage/guest/run-tests.sh"

# 3. Pack and boot.
initrd=$stage.cpio
(cd "$stage" && find . | busybox cpio -o -H newc 2>/dev/null) > "$initrd"
trap 'rm -rf "$stage" "$initrd"' EXIT
log=${NMDB_KERNEL_LOG:-$target/kernel-tests.log}
echo "kernel: booting $kver with $(du -h "$initrd" | cut -f1) of initramfs (log: $log)"
start=$(date +%s)
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1G \
    -kernel "$cache/vmlinux" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1" \
    -serial stdio -display none -no-reboot -nodefaults > "$log" 2>&1
qemu_rc=$?
set -e
echo "kernel: guest finished in $(( $(date +%s) - start ))s (qemu exit $qemu_rc)"
grep -E '^(guest|guide|test |test result|NMDB-GUEST-RESULT)' "$log" || true
if ! grep -q '^NMDB-GUEST-RESULT: PASS' "$log"; then
    echo "kernel: the guest did not report success; full log:" >&2
    tail -100 "$log" >&2
    exit 1
fi
echo "kernel: guest tests passed"
