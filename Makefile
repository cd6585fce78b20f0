# sigvisor. Every generated file goes under $(BUILD); V=1 shows the commands.
#   make run    build and serve the built-in worker on 127.0.0.1:8000
#   make test   unit + integration tests, ending with "N passed, N failed, N skipped"
#   make check  formatter check, include layering, static analysis, and the test suite
#               under ASan+UBSan
#   make bench  side-by-side benchmark against gunicorn (scripts/bench/)
#   make test-kernels  the supervisor and its eBPF probes on the host kernel and Debian's
#               5.10, 6.1 and 6.12 under qemu, x86_64 and arm64 (test/kernels/run.sh)

BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes -Wshadow \
	-Wformat=2 -Wundef -Wpointer-arith -Wvla
override CFLAGS += -std=gnu11 $(WARNINGS)
override CPPFLAGS += -D_GNU_SOURCE -Ishared -Iarbiter -Iworker
# The libraries but the C library are linked in: each worker is this binary exec'd,
# and loading five more shared objects was a fifth of its start (ld.so: symbol lookups,
# relocations, mprotect) at 4,096 workers. The C library stays shared: getpwnam for
# --user loads its NSS modules.
LDLIBS := -Wl,-Bstatic -linih -luring -lbpf -lelf -lz -Wl,-Bdynamic
# kcheck (test/kernels) links libbpf only; a static cross build adds what libelf needs.
KCHECK_LDLIBS := -lbpf -lelf -lz
ifeq ($(SAN),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
endif

ifeq ($(V),1)
Q :=
msg := @true
else
Q := @
msg := @printf '  %-6s %s\n'
endif

comma := ,
SRCS := $(wildcard arbiter/*.c) $(wildcard worker/*.c) $(wildcard shared/*.c)
# worker/main.c is the static built-in worker's own entry point (WORKER_IMAGE).
OBJS := $(filter-out $(BUILD)/obj/worker/main.o,$(SRCS:%.c=$(BUILD)/obj/%.o))
LIB_OBJS := $(filter-out $(BUILD)/obj/arbiter/main.o,$(OBJS))
# The built-in worker alone, linked statically and carried inside sigvisor
# (arbiter/worker_image.h). Not in a sanitizer build: the sanitizers' run-time has no
# static form, and its workers are sigvisor itself, sanitized.
WORKER_IMAGE := $(BUILD)/sigvisor-worker
ifneq ($(SAN),1)
IMAGE_OBJ := $(BUILD)/obj/arbiter/worker_image_data.o
endif
IMAGE_OBJS := $(patsubst %.c,$(BUILD)/image/%.o,$(wildcard worker/*.c shared/*.c))
# The image is linked against musl where there is one (Debian's musl-tools) and the
# compiler is the default: a static musl program's start touches fewer pages than a
# static glibc one's (no IRELATIVE ifuncs, tunables or locale set-up), and starting
# 4,096 built-in workers took 3.3-3.6 s instead of 4.7-5.5 s here. Otherwise (CC=, a
# cross build) the image is $(CC)'s, with its C library, static: the same program.
ifeq ($(origin WORKER_CC),undefined)
WORKER_CC := $(if $(and $(filter default,$(origin CC)),$(shell command -v musl-gcc 2>/dev/null)),musl-gcc,$(CC))
endif
IMAGE_INCLUDE := $(if $(filter musl-gcc,$(notdir $(WORKER_CC))),$(BUILD)/image/include)
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/test/%)
SIGVISOR := $(BUILD)/sigvisor

.DELETE_ON_ERROR:
.PHONY: all run test unit check format format-check lint asan-test bench clean deps-run deps-test deps-check deps-bench \
	test-kernels deps-kernels

all: $(SIGVISOR)

$(SIGVISOR): $(OBJS) $(IMAGE_OBJ)
	$(msg) LINK $@
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Stripped: it is carried, never debugged in place (the same code is in sigvisor).
# Its objects are compiled a second time, by WORKER_CC, into $(BUILD)/image/.
$(WORKER_IMAGE): $(IMAGE_OBJS)
	$(msg) LINK $@
	$(Q)$(WORKER_CC) $(LDFLAGS) -static -s -Wl,--gc-sections -o $@ $^

$(BUILD)/image/%.o: %.c | $(BUILD)/image/worker $(BUILD)/image/shared $(IMAGE_INCLUDE)
	$(msg) CC "$< ($(notdir $(WORKER_CC)))"
	$(Q)$(WORKER_CC) $(CPPFLAGS) $(if $(IMAGE_INCLUDE),-idirafter $(IMAGE_INCLUDE)) $(CFLAGS) \
		-ffunction-sections -fdata-sections -MMD -MP -c -o $@ $<

# musl's headers are the C library's only: the kernel's (linux/, asm/) are the
# system's, found last.
$(BUILD)/image/include:
	$(Q)mkdir -p $@
	$(Q)ln -sfn /usr/include/linux $@/linux
	$(Q)ln -sfn /usr/include/asm-generic $@/asm-generic
	$(Q)ln -sfn $(or $(wildcard /usr/include/$(shell $(CC) -print-multiarch)/asm),/usr/include/asm) $@/asm

$(IMAGE_OBJ): arbiter/worker_image_data.S $(WORKER_IMAGE)
	$(msg) AS $<
	$(Q)$(CC) -c -DWORKER_IMAGE='"$(WORKER_IMAGE)"' -o $@ $<

$(BUILD)/obj/%.o: %.c | $(BUILD)/obj/arbiter $(BUILD)/obj/worker $(BUILD)/obj/shared
	$(msg) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# A test may replace functions the code under test calls (the kernel, the clock) with
# its own __wrap_NAME: it lists them on a " * wrap: NAME ..." line of its comment.
$(BUILD)/test/%: test/unit/%.c $(LIB_OBJS) | $(BUILD)/test
	$(msg) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes $(LDFLAGS) \
		$(patsubst %,-Wl$(comma)--wrap=%,$(shell sed -n 's/^ \* wrap: //p' $<)) \
		-o $@ $< $(LIB_OBJS) $(LDLIBS) -lcmocka

$(BUILD)/obj/arbiter $(BUILD)/obj/worker $(BUILD)/obj/shared $(BUILD)/test \
		$(BUILD)/image/worker $(BUILD)/image/shared:
	$(Q)mkdir -p $@

deps-run deps-test deps-check deps-bench deps-kernels: deps-%:
	$(Q)scripts/deps.sh $*

run: deps-run
	$(Q)$(MAKE) --no-print-directory $(SIGVISOR)
	exec $(SIGVISOR) $(ARGS)

unit: $(UNIT_BINS)

test: deps-test
	$(Q)$(MAKE) --no-print-directory $(SIGVISOR) unit
	$(Q)BUILD=$(BUILD) SIGVISOR=$(abspath $(SIGVISOR)) SIGVISOR_SANITIZED=$(SAN) test/run.sh

# test/kernels/kcheck.c: the scripted signal sequence and exact counts, run on the host
# and as the init of a qemu guest (test/kernels/run.sh).
$(BUILD)/kcheck: test/kernels/kcheck.c shared/sigvisor_bpf.h | $(BUILD)/test
	$(msg) CC $<
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(KCHECK_LDLIBS)

test-kernels: deps-kernels
	$(Q)$(MAKE) --no-print-directory $(SIGVISOR) $(BUILD)/kcheck
	$(Q)BUILD=$(BUILD) SIGVISOR=$(abspath $(SIGVISOR)) KCHECK=$(abspath $(BUILD)/kcheck) \
		test/kernels/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	$(msg) FORMAT check
	$(Q)clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

# Includes go down the layers only (doc/ARCHITECTURE.md), then cppcheck.
lint:
	$(msg) LAYERS check
	$(Q)python3 scripts/check-layers.py
	$(msg) CPPCHECK
	$(Q)cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
		--inline-suppr -D_GNU_SOURCE -D__linux__ -Ishared -Iarbiter -Iworker \
		--suppress=missingIncludeSystem arbiter worker shared

asan-test:
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 CFLAGS="-O1 -g" test

check: deps-check
	$(Q)$(MAKE) --no-print-directory format-check lint
	$(Q)$(MAKE) --no-print-directory asan-test
	$(Q)$(MAKE) --no-print-directory fuzz-smoke

bench: deps-bench
	$(Q)$(MAKE) --no-print-directory $(SIGVISOR)
	SIGVISOR=$(abspath $(SIGVISOR)) BUILD=$(BUILD) scripts/bench/run.sh

clean:
	rm -rf $(BUILD)

include bpf/bpf.mk
include mk/install.mk
include mk/fuzz.mk

-include $(OBJS:.o=.d) $(IMAGE_OBJS:.o=.d)
