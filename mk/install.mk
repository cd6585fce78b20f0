# Included by the Makefile: what --version says about the build, and installing.
#   make install [PREFIX=/usr/local] [DESTDIR=]   the binary, sigvisor(8), the examples
#     (sample config, systemd units in $(DOCDIR)/systemd, Kubernetes manifests), and the
#     README with the pages of doc/ in $(DOCDIR)/doc, where the README's links find them
#   make uninstall [PREFIX=...] [DESTDIR=]
# INSTALL_BIN installs another binary than $(BUILD)/sigvisor, e.g. one built elsewhere.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/sigvisor
INSTALL ?= install
INSTALL_BIN ?= $(SIGVISOR)

# The revision, from this tree's own .git only: a tarball unpacked inside another
# checkout must not report that one's commit. --no-optional-locks: make may run while
# someone commits in the same tree, and must never take index.lock from under them.
# Untracked files do not count as dirty, as with `git describe --dirty`.
# safe.directory: a container build copies the tree in owned by another uid, and git
# would refuse to read it. `make SIGVISOR_GIT_REV=abc1234` names it where there is no
# .git at all (scripts/k8s/Dockerfile's build argument).
GIT := git --no-optional-locks -c safe.directory='*' 
SIGVISOR_GIT_REV := $(or $(if $(wildcard .git),$(shell $(GIT) rev-parse --short=7 HEAD 2>/dev/null)),unknown)
ifneq ($(SIGVISOR_GIT_REV),unknown)
ifneq ($(shell $(GIT) status --porcelain --untracked-files=no 2>/dev/null | head -c1),)
SIGVISOR_GIT_REV := $(SIGVISOR_GIT_REV)-dirty
endif
endif
# Deferred (=): bpf/bpf.mk may be included after this file. It defines BPF_SKEL; a
# build without it links the stub loader.
SIGVISOR_FEATURES = +epoll $(if $(wildcard arbiter/loop_uring.c),+io_uring,-io_uring) \
	$(if $(BPF_SKEL),+bpf,-bpf)

# version.o alone gets the revision, and is rebuilt when the revision or the features
# change: the stamp is rewritten only when its content differs.
VERSION_STAMP := $(BUILD)/version.stamp

$(VERSION_STAMP): FORCE | $(BUILD)/obj/shared
	$(Q)printf '%s\n' '$(SIGVISOR_GIT_REV) $(strip $(SIGVISOR_FEATURES))' | cmp -s - $@ || \
		printf '%s\n' '$(SIGVISOR_GIT_REV) $(strip $(SIGVISOR_FEATURES))' > $@

$(BUILD)/obj/shared/version.o $(BUILD)/image/shared/version.o: $(VERSION_STAMP)
$(BUILD)/obj/shared/version.o $(BUILD)/image/shared/version.o: override CPPFLAGS += -DSIGVISOR_GIT_REV='"$(SIGVISOR_GIT_REV)"' \
	-DSIGVISOR_FEATURES='"$(strip $(SIGVISOR_FEATURES))"'

.PHONY: install uninstall FORCE
FORCE:

# Examples: the sample configuration, the sample systemd units, and the Kubernetes
# manifests when there are any.
EXAMPLES_K8S = $(wildcard scripts/k8s/*.yaml scripts/k8s/*.yml scripts/k8s/*.md)
DOC_PAGES = $(wildcard doc/*.md)

install: $(INSTALL_BIN)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/sigvisor
	$(INSTALL) -m 0644 doc/sigvisor.8 $(DESTDIR)$(MANDIR)/man8/sigvisor.8
	$(INSTALL) -m 0644 doc/sigvisor.conf.example $(DESTDIR)$(DOCDIR)/sigvisor.conf.example
	$(INSTALL) -d $(DESTDIR)$(DOCDIR)/systemd
	$(INSTALL) -m 0644 doc/sigvisor.service doc/sigvisor.socket $(DESTDIR)$(DOCDIR)/systemd/
	$(if $(wildcard README.md),$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md)
	$(if $(DOC_PAGES),$(INSTALL) -d $(DESTDIR)$(DOCDIR)/doc)
	$(if $(DOC_PAGES),$(INSTALL) -m 0644 $(DOC_PAGES) $(DESTDIR)$(DOCDIR)/doc/)
	$(if $(EXAMPLES_K8S),$(INSTALL) -d $(DESTDIR)$(DOCDIR)/k8s)
	$(if $(EXAMPLES_K8S),$(INSTALL) -m 0644 $(EXAMPLES_K8S) $(DESTDIR)$(DOCDIR)/k8s/)

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sigvisor $(DESTDIR)$(MANDIR)/man8/sigvisor.8
	rm -rf $(DESTDIR)$(DOCDIR)
