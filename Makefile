# nmdb: build, test, install.
#
#   make            build the server, the library and nmdb-stats (release)
#   make run        build and start the server in the foreground on ./database
#   make check      install what tests need, then build and run every test:
#                   Rust and C (nextest), Python (pytest), and TIPC/SCTP in a
#                   Debian kernel under qemu (tests/kernel/run.sh)
#   make LTO=1      any of these with whole-program optimization (see below)
#   make bench      the benchmarks of BENCHMARKS.md (scripts/bench.sh)
#   make install    install under $(DESTDIR)$(PREFIX) (the systemd unit in
#                   lib/systemd/system); then run ldconfig
#   make uninstall  remove what install put there

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
VERSION := 0.24.0
MAJOR := $(firstword $(subst ., ,$(VERSION)))
# Resolved once to an absolute path: cargo, the Python tests and the kernel
# harness then agree on where the build is, whatever the caller set
# (nothing, a relative path, or an absolute one anywhere).
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
export CARGO_TARGET_DIR := $(TARGET_DIR)
REL := $(TARGET_DIR)/release

# LTO=1 optimizes the Rust code as one program (link-time optimization, one
# code unit per crate): 3-4% less server CPU per TCP request here, UDP
# unchanged (BENCHMARKS.md). The price is build time: the first such build
# compiles RocksDB again (10 minutes on 2 cores), and every test program is
# linked that way too (the tests' rebuild took 2.7 minutes instead of 0.7),
# so it is not the default.
ifeq ($(LTO),1)
export CARGO_PROFILE_RELEASE_LTO := fat
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS := 1
endif

BINDIR := $(DESTDIR)$(PREFIX)/bin
LIBDIR := $(DESTDIR)$(PREFIX)/lib
INCDIR := $(DESTDIR)$(PREFIX)/include
PCDIR := $(LIBDIR)/pkgconfig
MAN1DIR := $(DESTDIR)$(PREFIX)/share/man/man1
MAN3DIR := $(DESTDIR)$(PREFIX)/share/man/man3
UNITDIR := $(LIBDIR)/systemd/system

.PHONY: all build run check test bench install uninstall clean

all: build

build:
	@scripts/deps.sh build
	$(CARGO) build --release --workspace

run:
	@scripts/deps.sh build
	$(CARGO) build --release -p nmdb-server
	$(REL)/nmdb -f -d ./database

check test:
	@scripts/deps.sh test
	$(CARGO) fmt --all -- --check
	$(CARGO) build --release --workspace
	$(CARGO) nextest run --release --workspace --no-fail-fast
	python3 -m pytest -q python/tests
	tests/kernel/run.sh

bench: build
	scripts/bench.sh

install:
	@test -x $(REL)/nmdb -a -f $(REL)/libnmdb.so || { echo "run 'make' first" >&2; exit 1; }
	install -d $(BINDIR) $(LIBDIR) $(INCDIR) $(PCDIR) $(MAN1DIR) $(MAN3DIR) $(UNITDIR)
	install -m 755 $(REL)/nmdb $(REL)/nmdb-stats $(BINDIR)/
	install -m 755 $(REL)/libnmdb.so $(LIBDIR)/libnmdb.so.$(VERSION)
	ln -sf libnmdb.so.$(VERSION) $(LIBDIR)/libnmdb.so.$(MAJOR)
	ln -sf libnmdb.so.$(MAJOR) $(LIBDIR)/libnmdb.so
	install -m 644 $(REL)/libnmdb.a $(LIBDIR)/libnmdb.a
	install -m 644 include/nmdb.h $(INCDIR)/nmdb.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' libnmdb/libnmdb.pc.in > $(PCDIR)/libnmdb.pc
	chmod 644 $(PCDIR)/libnmdb.pc
	install -m 644 man/nmdb.1 man/nmdb-stats.1 $(MAN1DIR)/
	install -m 644 man/libnmdb.3 $(MAN3DIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' contrib/systemd/nmdb.service.in > $(UNITDIR)/nmdb.service
	chmod 644 $(UNITDIR)/nmdb.service

uninstall:
	rm -f $(BINDIR)/nmdb $(BINDIR)/nmdb-stats
	rm -f $(LIBDIR)/libnmdb.so.$(VERSION) $(LIBDIR)/libnmdb.so.$(MAJOR) $(LIBDIR)/libnmdb.so $(LIBDIR)/libnmdb.a
	rm -f $(INCDIR)/nmdb.h $(PCDIR)/libnmdb.pc
	rm -f $(MAN1DIR)/nmdb.1 $(MAN1DIR)/nmdb-stats.1 $(MAN3DIR)/libnmdb.3
	rm -f $(UNITDIR)/nmdb.service

clean:
	$(CARGO) clean
