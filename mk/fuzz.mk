# Included by the Makefile: a libFuzzer target for every parser that reads outside input
# (test/fuzz/README.md). Everything is built under $(BUILD)/fuzz with clang.
#   make fuzz [FUZZ_SECONDS=60]   each target for FUZZ_SECONDS; make -j runs them side by side
#   make fuzz-smoke               each target for FUZZ_SMOKE_SECONDS (5), for make check
#   make fuzz-run-http            one target (FUZZ_TIME seconds, default FUZZ_SECONDS)
# Each run first replays test/fuzz/regressions/TARGET-*, then fuzzes from the seeds in
# test/fuzz/corpus/TARGET plus what earlier runs kept in $(BUILD)/fuzz/corpus/TARGET.
# A crash, a leak, an invariant failure or a hang fails the run; the input that did it
# is saved as $(BUILD)/fuzz/artifacts/TARGET-crash-... and the log is printed.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TIME ?= $(FUZZ_SECONDS)
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_TARGETS := options config notify control listener http duration upsettings upstate

# Each target links its harness and only the files its parser needs. Some of those files
# also hold code that needs more than the harness gives (notify.c logs and sends): lld with
# --gc-sections drops what the harness cannot reach, undefined references with it, while
# a reference from reachable code still fails the link.
FUZZ_options_SRCS := arbiter/options.c arbiter/options_load.c arbiter/config_file.c \
	shared/safefile.c shared/timeutil.c
FUZZ_options_LIBS := -linih
# No real files: "fuzz.conf" is served from the input, anything else does not exist.
FUZZ_options_LDFLAGS := -Wl,--wrap=open
FUZZ_config_SRCS := arbiter/options.c arbiter/options_load.c arbiter/config_file.c \
	shared/safefile.c shared/timeutil.c
FUZZ_config_LIBS := -linih
FUZZ_notify_SRCS := arbiter/notify.c
FUZZ_control_SRCS := arbiter/control_cmd.c
FUZZ_listener_SRCS := arbiter/listeners.c
FUZZ_http_SRCS := shared/http.c
# Past HTTP_HEAD_MAX (8192), to reach the 431 path.
FUZZ_http_FLAGS := -max_len=20000
FUZZ_duration_SRCS := shared/timeutil.c
FUZZ_upsettings_SRCS := arbiter/upsettings.c arbiter/options.c shared/timeutil.c
FUZZ_upstate_SRCS := arbiter/upstate.c

FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
# clang-only warnings in shared code must not break make check: warn, do not fail.
FUZZ_CFLAGS := -g -O1 -fno-omit-frame-pointer -std=gnu11 $(filter-out -Werror,$(WARNINGS)) \
	-ffunction-sections -fdata-sections
FUZZ_CPPFLAGS := -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -Ishared -Iarbiter -Iworker
FUZZ_LDFLAGS := -fuse-ld=lld -Wl,--gc-sections
# -timeout: an input that takes 10 s is a hang, and a failure.
FUZZ_RUN_FLAGS := -timeout=10 -print_final_stats=1

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_OBJDIRS := $(FUZZ_DIR)/obj/arbiter $(FUZZ_DIR)/obj/worker $(FUZZ_DIR)/obj/shared \
	$(FUZZ_DIR)/obj/test/fuzz $(FUZZ_DIR)/artifacts

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz: deps-check
	$(Q)$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=fuzz-run-%) FUZZ_TIME=$(FUZZ_SECONDS)

fuzz-smoke: deps-check
	$(Q)$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=fuzz-run-%) FUZZ_TIME=$(FUZZ_SMOKE_SECONDS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/obj/%.o: %.c | $(FUZZ_OBJDIRS)
	$(msg) FUZZCC $<
	$(Q)$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) -MMD -MP -c -o $@ $<

define FUZZ_LINK
$(FUZZ_DIR)/fuzz_$(1): $(FUZZ_DIR)/obj/test/fuzz/fuzz_$(1).o \
		$(FUZZ_$(1)_SRCS:%.c=$(FUZZ_DIR)/obj/%.o)
	$$(msg) LINK $$@
	$$(Q)$$(FUZZ_CC) $$(FUZZ_SAN) $$(FUZZ_LDFLAGS) $$(FUZZ_$(1)_LDFLAGS) -o $$@ $$^ \
		$$(FUZZ_$(1)_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_LINK,$(t))))

# Not phony (a pattern cannot be), but nothing ever creates a file of that name.
# The full libFuzzer output goes to $(FUZZ_DIR)/TARGET.log (and to the terminal with V=1).
fuzz-run-%: $(FUZZ_DIR)/fuzz_%
	$(msg) FUZZ "$* ($(FUZZ_TIME) s)"
	$(Q)mkdir -p $(FUZZ_DIR)/corpus/$*
	$(Q)set -e; log=$(FUZZ_DIR)/$*.log; : > $$log; \
	run() { \
		"$$@" >>$$log 2>&1 && r=0 || r=$$?; \
		[ "$(V)" != 1 ] || cat $$log; \
		return $$r; \
	}; \
	fail() { \
		[ "$(V)" = 1 ] || tail -n 60 $$log; \
		echo "fuzz-$*: $$1 (log: $$log; inputs: $(FUZZ_DIR)/artifacts/$*-*)" >&2; \
		exit 1; \
	}; \
	regs="$(wildcard test/fuzz/regressions/$*-*)"; \
	if [ -n "$$regs" ]; then \
		run $< $(FUZZ_RUN_FLAGS) $(FUZZ_$*_FLAGS) $$regs || fail "a regression input fails"; \
	fi; \
	run $< $(FUZZ_RUN_FLAGS) $(FUZZ_$*_FLAGS) -max_total_time=$(FUZZ_TIME) \
		-artifact_prefix=$(FUZZ_DIR)/artifacts/$*- \
		$(FUZZ_DIR)/corpus/$* test/fuzz/corpus/$* || fail "found a bug"; \
	printf '  %-6s %s\n' DONE "$*: $$(grep -a 'DONE' $$log | tail -n 1 | \
		sed -e 's/^#\([0-9]*\)[[:space:]]*DONE[[:space:]]*/\1 runs, /' -e 's/  */ /g')"

$(FUZZ_OBJDIRS):
	$(Q)mkdir -p $@

-include $(wildcard $(FUZZ_DIR)/obj/*/*.d $(FUZZ_DIR)/obj/test/fuzz/*.d)
