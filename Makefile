# libskipless - see README.md.  `make` builds everything, `make check` runs the tests,
# `make run` the demo, `make install PREFIX=... DESTDIR=...` installs.
# SANITIZE=1 builds into build/san with AddressSanitizer + UndefinedBehaviorSanitizer.

VERSION_MAJOR := 0
VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=
PY := /usr/bin/python3
DEB_PACKAGES := gcc make pkg-config libopenblas-dev liblapacke-dev libjansson-dev check libsubunit-dev python3-numpy gnuplot-nox

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -Isrc
LIBS := -lopenblas -llapacke -ljansson -lm -lpthread

ifeq ($(SANITIZE),1)
  B := build/san
  LIBDIR := build/san/lib
  BINDIR := build/san/bin
  SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
  B := build
  LIBDIR := lib
  BINDIR := bin
  SAN :=
endif
CFLAGS_ALL := $(BASE_CFLAGS) $(SAN) $(CFLAGS)
LDFLAGS_ALL := $(SAN) $(LDFLAGS)

LIB_SRC := $(wildcard src/*.c)
LIB_OBJ := $(patsubst src/%.c,$(B)/obj/%.o,$(LIB_SRC))
TOOL_SRC := src/tools/npy.c
TOOL_OBJ := $(B)/obj/tools/npy.o
STATIC := $(LIBDIR)/libskipless.a
SHARED_REAL := $(LIBDIR)/libskipless.so.$(VERSION)
SHARED_SONAME := libskipless.so.$(VERSION_MAJOR)
SHARED := $(LIBDIR)/libskipless.so
CLI := $(BINDIR)/skipless
EXAMPLES := $(BINDIR)/simple
TEST_BIN := $(B)/test/test_skipless
TEST_SRC := $(wildcard test/*.c)
MODELS := $(B)/testmodels/manifest.json

.PHONY: all deps check run install uninstall clean bench-models bench
all: $(STATIC) $(SHARED) $(CLI) $(EXAMPLES)

$(B)/obj/%.o: src/%.c include/skipless.h src/internal.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC -fvisibility=hidden -c $< -o $@

$(B)/obj/tools/%.o: src/tools/%.c src/tools/%.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SHARED_REAL): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(SHARED_SONAME) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(SHARED): $(SHARED_REAL)
	ln -sf libskipless.so.$(VERSION) $(LIBDIR)/$(SHARED_SONAME)
	ln -sf $(SHARED_SONAME) $@

# The CLI and examples link the static library so they run from the tree.
CLI_SRC := src/cli/skipless.c src/cli/bench.c src/cli/membw.c
$(CLI): $(CLI_SRC) src/cli/bench.h src/cli/membw.h $(TOOL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CLI_SRC) $(TOOL_OBJ) $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

$(BINDIR)/simple: examples/simple.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

$(TEST_BIN): $(TEST_SRC) test/tests.h $(TOOL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_SRC) $(TOOL_OBJ) $(STATIC) $(LDFLAGS_ALL) $(LIBS) $$(pkg-config --libs check) -o $@

# Seeded test models + float64 reference logits (independent numpy code).
$(MODELS): test/models.py test/reference.py
	@mkdir -p $(dir $@)
	$(PY) test/models.py $(dir $@)

# Install the Debian packages that are missing (needs root; otherwise says what to run).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

check: deps
	$(MAKE) all $(TEST_BIN) $(MODELS)
	$(PY) test/test_reference.py
	SKL_TEST_MODELS=$(B)/testmodels $(TEST_BIN)
	sh test/test_cli.sh $(CLI) $(B)/testmodels
	$(PY) test/test_merged_reference.py $(CLI) $(B)/testmodels
ifneq ($(SANITIZE),1)
	sh test/test_install.sh
endif

# Benchmark (not part of check; 15-25 min, ~14 GB of generated models in $(B)/bench/models):
# bench/run.sh generates the models once, runs `skipless bench`, prints the tables and
# writes $(B)/bench/*.json and the plot docs/performance.png (docs/performance.md).
bench: deps
	$(MAKE) all
	sh bench/run.sh $(CLI) $(B)/bench

run: deps
	$(MAKE) all $(MODELS)
	sh examples/demo.sh $(CLI) $(B)/testmodels/models/serial_mha_silu_glu

install: $(STATIC) $(SHARED) $(CLI)
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/skipless.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED_REAL) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libskipless.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SHARED_SONAME)
	ln -sf $(SHARED_SONAME) $(DESTDIR)$(PREFIX)/lib/libskipless.so
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' pkgconfig/skipless.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/skipless.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/skipless.h $(DESTDIR)$(PREFIX)/lib/libskipless.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/skipless.pc $(DESTDIR)$(PREFIX)/bin/skipless

clean:
	rm -rf build lib bin
