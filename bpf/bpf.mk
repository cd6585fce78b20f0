# The eBPF probes, included by the Makefile. The chain, every step under $(BUILD):
#   bpf/sigvisor.bpf.c + bpf/vmlinux/$(BPF_ARCH)/vmlinux.h
#       --clang -target bpf--> sigvisor.bpf.o (BTF kept, DWARF stripped)
#   sigvisor.bpf.o --bpftool gen skeleton--> sigvisor.skel.h (the object embedded)
# arbiter/bpf*.c include the skeleton. Debian's bpftool 7.1 on purpose: skeletons from
# a newer bpftool may not compile against libbpf 1.1's headers (doc/EBPF.md).

BPFTOOL ?= bpftool
BPF_CLANG ?= clang
LLVM_STRIP ?= llvm-strip
# -I of libbpf's bpf/bpf_helpers.h when it is not in /usr/include (a cross sysroot).
BPF_INCLUDES ?=
# bpf_tracing.h needs the target architecture (PT_REGS_PARM*_SYSCALL in sys_enter), and
# vmlinux.h is per architecture: the compiler's target, not the build host's (CC=
# aarch64-linux-gnu-gcc builds arm64 probes on an x86 host). The vendored vmlinux.h
# (bpf/vmlinux/gen.sh) keeps the build off the build host's /sys/kernel/btf/vmlinux.
BPF_ARCH := $(shell $(CC) -dumpmachine | sed -e 's/-.*//' -e 's/x86_64/x86/' \
	-e 's/aarch64/arm64/' -e 's/powerpc64le/powerpc/' -e 's/riscv64/riscv/' -e 's/s390x/s390/')
BPF_VMLINUX := bpf/vmlinux/$(BPF_ARCH)/vmlinux.h
ifeq ($(wildcard $(BPF_VMLINUX)),)
$(error no $(BPF_VMLINUX) for the target of $(CC): add the architecture to bpf/vmlinux/gen.sh)
endif
# -g: BTF for the maps and the programs (without it bpftool prints bare numbers and
# tp_btf cannot load). vmlinux.h is generated code: no -Wextra there; unused
# parameters come from BPF_PROG's signature.
BPF_CFLAGS := -g -O2 -mcpu=v3 -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror -Wno-unused-parameter

BPF_SKEL := $(BUILD)/sigvisor.skel.h

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BPF_VMLINUX) shared/sigvisor_bpf.h | $(BUILD)/obj/arbiter
	$(msg) BPF $<
	$(Q)$(BPF_CLANG) -target bpf $(BPF_CFLAGS) -Ibpf/vmlinux/$(BPF_ARCH) -Ishared \
		$(BPF_INCLUDES) -c -o $@ $<
	$(Q)$(LLVM_STRIP) -g $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(msg) SKEL $@
	$(Q)$(BPFTOOL) gen skeleton $< name $* > $@

# The loader needs the skeleton before it compiles; with -MMD later builds know it too.
BPF_LOADER_OBJS := $(filter $(BUILD)/obj/arbiter/bpf%.o,$(OBJS))
$(BPF_LOADER_OBJS): $(BPF_SKEL)
$(BPF_LOADER_OBJS): override CPPFLAGS += -I$(BUILD)

# The .bpf.o is an intermediate of the skeleton: keep it for bpftool/llvm-objdump.
.SECONDARY: $(BUILD)/sigvisor.bpf.o
