# SPDX-License-Identifier: Apache-2.0
# isthmus — GNU Makefile. `make help` lists the targets.

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc
V       ?= 0

PKGS     := openssl libpcre2-8 yaml-0.1 liburing libsystemd libnghttp2 libcares
DEB_DEPS := build-essential pkg-config libssl-dev libpcre2-dev libyaml-dev liburing-dev \
            libcmocka-dev libsystemd-dev clang curl wrk nginx haproxy python3 openssl socat strace procps \
            dpkg-dev rpm lintian logrotate man-db adduser iproute2 libclang-rt-14-dev \
            libnghttp2-dev nghttp2-client python3-h2 python3-grpcio python3-websockets python3-cryptography \
            libc-ares-dev dnsmasq-base

# Root's tools (dpkg's ldconfig, nginx, haproxy) are in the sbin directories,
# which a plain su leaves out of PATH: every recipe finds them all the same
# (the tests would skip nginx's rounds as not installed, the package test fail).
export PATH := $(PATH):/usr/local/sbin:/usr/sbin:/sbin

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
# What Debian's dpkg-buildflags gives with hardening=+all (the packaged
# haproxy and nginx are built so): off for the sanitizer build, whose
# interceptors the _chk functions would bypass.
HARDEN   ?= -fstack-protector-strong -fstack-clash-protection -fcf-protection -D_FORTIFY_SOURCE=2 \
            -Wformat -Werror=format-security
HARDEN_LD ?= -Wl,-z,relro -Wl,-z,now
ALL_CFLAGS = -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(HARDEN) $(EXTRA_CFLAGS) -I. -MMD -MP \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
TEST_LIBS  = $(shell pkg-config --libs cmocka 2>/dev/null)

ifeq ($(V),0)
Q = @
quiet = @printf '  %-6s %s\n' $(1) $(2);
else
Q =
quiet =
endif

LIB_SRCS  := $(sort $(wildcard lib/*.c shm/*.c conf/*.c health/*.c worker/*.c)) \
             $(filter-out master/main.c,$(sort $(wildcard master/*.c)))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ  := $(BUILD)/master/main.o
TEST_SRCS := $(sort $(wildcard tests/unit/test_*.c))
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
UPSTREAM  := $(BUILD)/tests/upstream
# test_tls.py's KeyUpdate flood client (standalone: OpenSSL only); test_ops.py's
# LD_PRELOAD library that refuses forks on command.
TEST_TOOLS := $(BUILD)/tests/keyupdate_flood $(BUILD)/tests/keyupdate_upstream $(BUILD)/tests/fail_fork.so
FUZZ_SRCS := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)
# bench/tunnel.sh's load client and echo server (standalone: libcrypto only).
BENCH_BINS := $(BUILD)/bench/tunnel_load $(BUILD)/bench/tunnel_echo

.PHONY: all deps check unit integration asan fuzz fuzz-run run bench install clean help format deb rpm package-test

all: $(BUILD)/isthmus $(BUILD)/isthmusctl $(UPSTREAM) $(TEST_TOOLS) $(BENCH_BINS)

help:
	@echo 'make            build the isthmus binary and the test upstream (into $(BUILD)/)'
	@echo 'make deps       install the missing Debian build and test packages (apt-get, as root)'
	@echo 'make run        deps, build, start the gateway on conf/isthmus.yaml with demo upstreams'
	@echo 'make check      deps, build, run every test: unit, integration, ASan+UBSan, fuzzers'
	@echo 'make unit       run the cmocka unit tests'
	@echo 'make integration  run the integration tests (real master, workers, upstreams, clients)'
	@echo 'make asan       build with ASan+UBSan into build-asan/ and run the whole test suite'
	@echo 'make fuzz       build the libFuzzer harnesses (clang); fuzz-run runs each FUZZ_SECONDS'
	@echo 'make bench      isthmus beside HAProxy and nginx (HTTP/1.1, TLS, HTTP/2, gRPC, tunnels), interleaved rounds, ratios'
	@echo 'make install    install under DESTDIR/PREFIX'
	@echo 'make deb        build $(BUILD)/isthmus_VERSION-1_ARCH.deb (dpkg-deb; packaging/)'
	@echo 'make rpm        build $(BUILD)/isthmus-VERSION-1.ARCH.rpm (rpmbuild; packaging/rpm/isthmus.spec)'
	@echo 'make package-test  as root: install, run, reload, stop and purge the .deb; check the .rpm'
	@echo 'make format     clang-format every source file'
	@echo 'make clean      remove build outputs'
	@echo 'Variables: V=1 shows commands; BUILD=dir; CFLAGS; PREFIX; DESTDIR'

deps:
	@missing=""; for p in $(DEB_DEPS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (apt-get) or install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# `isthmus -vv` and isthmus_build_info: the libraries' versions pkg-config gives
# and the flags, as built.
$(BUILD)/master/buildinfo.o: ALL_CFLAGS += \
	-DISM_BUILD_PKGS='"$(strip $(foreach p,$(PKGS),$(p)=$(shell pkg-config --modversion $(p) 2>/dev/null)))"' \
	-DISM_BUILD_CFLAGS='"$(strip $(CFLAGS) $(EXTRA_CFLAGS))"'

$(BUILD)/libisthmus.a: $(LIB_OBJS)
	$(call quiet,AR,$@)rm -f $@ && ar rcs $@ $^

$(BUILD)/isthmus: $(MAIN_OBJ) $(BUILD)/libisthmus.a
	$(call quiet,LD,$@)$(CC) $(CFLAGS) $(HARDEN) $(HARDEN_LD) $(EXTRA_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/isthmusctl: ctl/isthmusctl.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(ALL_CFLAGS) $(HARDEN_LD) -o $@ $<

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(BUILD)/libisthmus.a
	@mkdir -p $(dir $@)
	$(call quiet,LD,$@)$(CC) $(CFLAGS) $(HARDEN) $(HARDEN_LD) $(EXTRA_CFLAGS) -o $@ $^ $(LDLIBS_ALL) $(TEST_LIBS)

$(BUILD)/tests/upstream.o: tests/upstream/upstream.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(UPSTREAM): $(BUILD)/tests/upstream.o $(BUILD)/libisthmus.a
	$(call quiet,LD,$@)$(CC) $(CFLAGS) $(HARDEN) $(HARDEN_LD) $(EXTRA_CFLAGS) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/keyupdate_%: tests/upstream/keyupdate_%.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(ALL_CFLAGS) -o $@ $< $(shell pkg-config --libs openssl 2>/dev/null)

# Not instrumented under the sanitizers: preloaded before their runtime.
$(BUILD)/tests/fail_fork.so: tests/upstream/fail_fork.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) -std=gnu11 $(WARN) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(call quiet,CC,$<)$(CC) $(ALL_CFLAGS) -o $@ $< $(shell pkg-config --libs libssl libcrypto 2>/dev/null)

unit: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; $$t; done

# The HTTP/2 and gRPC test tools (tests/upstream/*.py) need Debian's python3-h2
# and python3-grpcio: they run under DEBIAN_PYTHON, whichever python3 runs run.py.
DEBIAN_PYTHON ?= /usr/bin/python3
# The integration tests run TEST_JOBS side by side, each in a process of its
# own: they mostly wait on sockets and timers (a run uses under half a CPU).
TEST_JOBS ?= 3
integration: all
	ISM_DEBIAN_PYTHON=$(DEBIAN_PYTHON) python3 tests/integration/run.py --build $(BUILD) --jobs $(TEST_JOBS)

FUZZ_SECONDS ?= 20
# The harnesses link one archive of the program's modules (the master's
# main aside), compiled once with the fuzzer's instrumentation: each takes
# the objects it uses, and a harness is one file to compile.
FUZZ_CFLAGS = -std=gnu11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=address,undefined \
	      -fno-sanitize-recover=undefined $(shell pkg-config --cflags $(PKGS))
FUZZ_FLAGS = $(FUZZ_CFLAGS) -fsanitize=fuzzer
FUZZ_LIB := $(BUILD)/fuzz/libism.a
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call quiet,FUZZCC,$@)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	$(call quiet,AR,$@)rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(call quiet,FUZZ,$@)clang $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB) $(LDLIBS_ALL)

-include $(FUZZ_LIB_OBJS:.o=.d)

fuzz: $(FUZZ_BINS)

# The harnesses run side by side, FUZZ_JOBS at a time (one per CPU), each
# FUZZ_SECONDS; a failure prints the end of its log and fails the run.
FUZZ_JOBS ?= $(JOBS)
fuzz-run: fuzz
	@printf '%s\n' $(FUZZ_BINS) | xargs -P $(FUZZ_JOBS) -n 1 sh -c 'n=$$(basename $$0); \
		mkdir -p $(BUILD)/fuzz/corpus-$$n; \
		if $$0 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 -artifact_prefix=$(BUILD)/fuzz/$$n- \
			$(BUILD)/fuzz/corpus-$$n fuzz/corpus/$$n >$(BUILD)/fuzz/$$n.log 2>&1; \
		then echo "== $$n ($(FUZZ_SECONDS) s): $$(tail -n 1 $(BUILD)/fuzz/$$n.log)"; \
		else tail -n 30 $(BUILD)/fuzz/$$n.log >&2; echo "$$n failed: see $(BUILD)/fuzz/$$n.log" >&2; exit 1; fi'

ASAN_MAKE = $(MAKE) BUILD=build-asan HARDEN= \
	EXTRA_CFLAGS='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined'
# '+': make sees $(MAKE) only when the line names it, so these sub-makes
# would run without the jobserver (-j1).
asan:
	+$(ASAN_MAKE) all unit
	+$(ASAN_MAKE) integration

# make check compiles JOBS files at a time (one per CPU); the integration
# tests run TEST_JOBS at a time whatever -j says.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
check: deps
	$(MAKE) -j$(JOBS) all
	$(MAKE) -j$(JOBS) unit
	$(MAKE) integration
	$(MAKE) -j$(JOBS) asan
	$(MAKE) -j$(JOBS) fuzz-run
	@# Installs and purges the .deb on this machine: as root only (CI runs as root).
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) package-test; \
	else echo 'make check: package-test not run: it installs the .deb and needs root'; fi
	@echo 'make check: all tests passed'

run: deps all
	sh tests/demo/run.sh $(BUILD)

bench: deps all
	sh bench/bench.sh $(BUILD) && sh bench/tls.sh $(BUILD) && sh bench/h2.sh $(BUILD) && sh bench/tunnel.sh $(BUILD)

# What the packages install, under PREFIX (the unit's and the logrotate
# policy's paths follow it); the configuration stays the administrator's: the
# example goes beside it, never over it.
UNITDIR ?= $(PREFIX)/lib/systemd/system
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)/etc/isthmus $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)/etc/logrotate.d $(DESTDIR)/etc/default \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/doc/isthmus/docs
	install -m 0755 $(BUILD)/isthmus $(DESTDIR)$(PREFIX)/sbin/isthmus
	install -m 0755 $(BUILD)/isthmusctl $(DESTDIR)$(PREFIX)/sbin/isthmusctl
	install -m 0644 conf/isthmus.yaml $(DESTDIR)/etc/isthmus/isthmus.yaml.example
	sed 's|/usr/sbin/|$(PREFIX)/sbin/|g' packaging/isthmus.service \
		>$(DESTDIR)$(UNITDIR)/isthmus.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/isthmus.service
	install -m 0644 packaging/logrotate/isthmus $(DESTDIR)/etc/logrotate.d/isthmus
	test -e $(DESTDIR)/etc/default/isthmus || \
		install -m 0644 packaging/default/isthmus $(DESTDIR)/etc/default/isthmus
	install -m 0644 packaging/man/isthmus.8 packaging/man/isthmusctl.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 packaging/man/isthmus.yaml.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 README.md LICENSE $(DESTDIR)$(PREFIX)/share/doc/isthmus/
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/isthmus/docs/

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(BUILD)/isthmusctl.d $(BUILD)/tests/upstream.d $(BENCH_BINS:=.d) $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d)

# Packages (packaging/): binary packages of the built tree, and their test.
deb: all
	sh packaging/build-deb.sh $(BUILD)

rpm: all
	sh packaging/build-rpm.sh $(BUILD)

package-test: deb rpm
	lintian --fail-on error $(BUILD)/isthmus_*.deb
	python3 tests/packaging/test_packages.py --build $(BUILD)
