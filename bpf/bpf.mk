# The eBPF probes, included by the Makefile. The chain, every step under $(BUILD):
#   /sys/kernel/btf/vmlinux --bpftool--> vmlinux.h
#   bpf/sigvisor.bpf.c --clang -target bpf--> sigvisor.bpf.o (BTF kept, DWARF stripped)
#   sigvisor.bpf.o --bpftool gen skeleton--> sigvisor.skel.h (the object embedded)
# arbiter/bpf*.c include the skeleton. Debian's bpftool 7.1 on purpose: skeletons from
# a newer bpftool may not compile against libbpf 1.1's headers (doc/EBPF.md).

BPFTOOL ?= bpftool
BPF_CLANG ?= clang
LLVM_STRIP ?= llvm-strip
# bpf_tracing.h needs the target architecture (PT_REGS_PARM*_SYSCALL in sys_enter).
BPF_ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' \
	-e 's/ppc64le/powerpc/' -e 's/riscv64/riscv/' -e 's/s390x/s390/')
# -g: BTF for the maps and the programs (without it bpftool prints bare numbers and
# tp_btf cannot load). vmlinux.h is generated code: no -Wextra there; unused
# parameters come from BPF_PROG's signature.
BPF_CFLAGS := -g -O2 -mcpu=v3 -D__TARGET_ARCH_$(BPF_ARCH) -Wall -Werror -Wno-unused-parameter

BPF_SKEL := $(BUILD)/sigvisor.skel.h

$(BUILD)/vmlinux.h: | $(BUILD)/obj/arbiter
	$(msg) BTF $@
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(BUILD)/%.bpf.o: bpf/%.bpf.c $(BUILD)/vmlinux.h shared/sigvisor_bpf.h
	$(msg) BPF $<
	$(Q)$(BPF_CLANG) -target bpf $(BPF_CFLAGS) -I$(BUILD) -Ishared -c -o $@ $<
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
