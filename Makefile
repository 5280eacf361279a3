# libskipless - see README.md.  `make` builds everything, `make check` runs the tests,
# `make run` the demo, `make install PREFIX=... DESTDIR=...` installs.
# SANITIZE=1 builds into build/san with AddressSanitizer + UndefinedBehaviorSanitizer.

# The version is written once, in include/skipless.h.
header_version = $(shell sed -n 's/^\#define SKL_VERSION_$(1) \([0-9][0-9]*\).*/\1/p' include/skipless.h)
VERSION_MAJOR := $(call header_version,MAJOR)
VERSION := $(VERSION_MAJOR).$(call header_version,MINOR).$(call header_version,PATCH)
PREFIX ?= /usr/local
DESTDIR ?=
PY := /usr/bin/python3
DEB_PACKAGES := gcc make pkg-config libopenblas-dev liblapacke-dev libjansson-dev libpcre2-dev check libsubunit-dev python3-numpy gnuplot-nox \
  clang libclang-rt-14-dev
# node + npm run the tokenizer comparison (test/tokenizers_js); Debian's are installed only when
# `node` / `npm` are missing, so a newer node from elsewhere is left alone.
NODE_PACKAGES := nodejs npm

CC ?= cc
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -Iinclude -Isrc
LIBS := -lopenblas -llapacke -ljansson -lpcre2-8 -lm -lpthread

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
EXAMPLES := $(BINDIR)/simple $(BINDIR)/demo
DEFAULT_MODEL := examples/models/kjv-serial
TEST_BIN := $(B)/test/test_skipless
TEST_SRC := $(wildcard test/*.c)
MODELS := $(B)/testmodels/manifest.json

# Bindings (examples/python, examples/rust): Python tests run under both interpreters;
# cargo is found on PATH or in ~/.cargo/bin (NO_RUST=1 skips the Rust checks).
PYTHONS := $(PY) python3
CARGO := $(or $(shell command -v cargo 2>/dev/null),$(wildcard $(HOME)/.cargo/bin/cargo))
BIND_ENV := SKIPLESS_LIBRARY=$(abspath $(LIBDIR))/$(SHARED_SONAME) SKIPLESS_LIB_DIR=$(abspath $(LIBDIR)) \
  LD_LIBRARY_PATH=$(abspath $(LIBDIR)) SKIPLESS_CLI=$(abspath $(CLI)) SKL_TEST_MODELS=$(abspath $(B)/testmodels)

.PHONY: all deps check check-abi check-python check-rust run install uninstall clean bench-models bench bench-merge bench-7b
all: $(STATIC) $(SHARED) $(CLI) $(EXAMPLES)

$(B)/obj/%.o: src/%.c include/skipless.h $(wildcard src/*.h)
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
CLI_SRC := src/cli/skipless.c src/cli/bench.c src/cli/membw.c src/cli/util.c
$(CLI): $(CLI_SRC) src/cli/bench.h src/cli/membw.h src/cli/util.h $(TOOL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CLI_SRC) $(TOOL_OBJ) $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

$(BINDIR)/%: examples/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

# The test binary: one object per test/*.c; -MMD -MP writes each object's header
# dependencies (test/tests.h, include/skipless.h, the src/ headers it includes) to a .d file.
TEST_OBJ := $(patsubst test/%.c,$(B)/test/obj/%.o,$(TEST_SRC))
$(B)/test/obj/%.o: test/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(TEST_BIN): $(TEST_OBJ) $(TOOL_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_OBJ) $(TOOL_OBJ) $(STATIC) $(LDFLAGS_ALL) $(LIBS) $$(pkg-config --libs check) -o $@

-include $(TEST_OBJ:.o=.d)

# Seeded test models + float64 reference logits (independent numpy code).
$(MODELS): test/models.py test/reference.py test/tokenizers.py
	@mkdir -p $(dir $@)
	$(PY) test/models.py $(dir $@)
	$(PY) test/tokenizers.py $(dir $@)

# Every tokenizer the project ships or tests: the test models' and examples/models/*/tokenizer.json.
TOKENIZER_MODELS = $(B)/testmodels/models/tok_plain $(B)/testmodels/models/tok_prefix.safetensors \
  $(patsubst %/tokenizer.json,%,$(wildcard examples/models/*/tokenizer.json))

# Install the Debian packages that are missing (needs root; otherwise says what to run).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then missing="$$missing $(NODE_PACKAGES)"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

check: deps
	$(MAKE) all $(TEST_BIN) $(MODELS)
	$(PY) test/test_reference.py
	sh test/test_scripts.sh
	SKL_TEST_MODELS=$(B)/testmodels $(TEST_BIN)
	sh test/test_cli.sh $(CLI) $(B)/testmodels
	$(PY) test/test_merged_reference.py $(CLI) $(B)/testmodels
	cd test/tokenizers_js && npm ci --no-audit --no-fund --loglevel=error
	node test/tokenizers_js/compare.mjs $(CLI) $(TOKENIZER_MODELS)
	$(PY) test/test_trained.py $(CLI)
	$(BINDIR)/demo $(DEFAULT_MODEL) "In the beginning" 50 2 > $(B)/demo.out
	$(MAKE) check-abi
ifneq ($(SANITIZE),1)
	sh test/test_install.sh
	$(MAKE) check-python check-rust
endif

# The same library, CLI and C tests built with clang (Debian's clang 14) into build/clang;
# the tests run on the gcc build's test models.  CI runs it (.ci/run).
CLANG_VARS := CC=clang B=build/clang LIBDIR=build/clang/lib BINDIR=build/clang/bin
.PHONY: check-clang
check-clang: $(MODELS)
	$(MAKE) $(CLANG_VARS) all build/clang/test/test_skipless
	SKL_TEST_MODELS=$(B)/testmodels build/clang/test/test_skipless
	sh test/test_cli.sh build/clang/bin/skipless $(B)/testmodels

# Fuzzing (docs/reliability.md): libFuzzer harnesses test/fuzz/fuzz_*.c built with Debian's
# clang, AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer), on the library built
# likewise into build/fuzz.  `make fuzz` runs each harness for FUZZ_SECONDS (60) on its committed
# seeds (test/fuzz/corpus/NAME, read only) plus build/fuzz/corpus/NAME (what it finds); a crash,
# a sanitizer report, a leak or a broken invariant fails the target and leaves the input in
# build/fuzz/crash-NAME-*.  `make fuzz-NAME` runs one; `make fuzz-seeds` rewrites the seeds.
FUZZ := build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_NAMES := load_file load_dir tokenizer_json tokenize cli_options
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Iinclude -Isrc $(FUZZ_SAN)
FUZZ_LIB_OBJ := $(patsubst src/%.c,$(FUZZ)/obj/%.o,$(LIB_SRC))
FUZZ_MAX_LEN_load_file := 131072
FUZZ_MAX_LEN_load_dir := 131072
FUZZ_MAX_LEN_tokenizer_json := 65536
FUZZ_MAX_LEN_tokenize := 4096
FUZZ_MAX_LEN_cli_options := 1024
FUZZ_EXTRA_load_file := test/fuzz/fuzz_model.c
FUZZ_EXTRA_load_dir := test/fuzz/fuzz_model.c
FUZZ_EXTRA_cli_options := src/cli/util.c
.PHONY: fuzz fuzz-build fuzz-seeds $(addprefix fuzz-,$(FUZZ_NAMES))

$(FUZZ)/obj/%.o: src/%.c include/skipless.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ)/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.c test/fuzz/fuzz.h test/fuzz/fuzz_model.c test/fuzz/fuzz_model.h \
  src/cli/util.c src/cli/util.h $(FUZZ_LIB_OBJ)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< test/fuzz/fuzz.c $(FUZZ_EXTRA_$*) $(FUZZ_LIB_OBJ) $(LIBS) -o $@

.SECONDARY: $(FUZZ_LIB_OBJ)
fuzz-build: $(addprefix $(FUZZ)/fuzz_,$(FUZZ_NAMES))

# OPENBLAS_NUM_THREADS=1: one core a harness (`make -j2 fuzz` runs two at once).
$(addprefix fuzz-,$(FUZZ_NAMES)): fuzz-%: $(FUZZ)/fuzz_%
	@mkdir -p $(FUZZ)/corpus/$*
	@echo "fuzz-$*: $(FUZZ_SECONDS) s (log: $(FUZZ)/$*.log)"
	@OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 $(FUZZ)/fuzz_$* $(FUZZ)/corpus/$* test/fuzz/corpus/$* \
	  -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) -timeout=20 -rss_limit_mb=2560 \
	  -artifact_prefix=$(FUZZ)/crash-$*- -print_final_stats=1 2> $(FUZZ)/$*.log || \
	  { tail -n 60 $(FUZZ)/$*.log; echo "fuzz-$*: FAILED (input in $(FUZZ)/crash-$*-*)" >&2; exit 1; }
	@grep -a -E '^stat::number_of_executed_units|^stat::peak_rss_mb' $(FUZZ)/$*.log | tr '\n' ' ' | \
	  sed 's/^/fuzz-$*: /; s/$$/\n/'

fuzz: $(addprefix fuzz-,$(FUZZ_NAMES))

fuzz-seeds: $(MODELS)
	$(PY) test/fuzz/seeds.py $(B)/testmodels

# The ABI rule of include/skipless.h: a caller built against the frozen 1.0 header
# (test/abi/skipless-1.0.h, never edited) runs against this library, and against a
# "grown" build of it whose header appends a field to every public struct.
ABI := $(B)/abi
$(ABI)/grown/skipless.h: include/skipless.h test/abi/grow.awk
	@mkdir -p $(dir $@)
	awk -f test/abi/grow.awk include/skipless.h > $@

$(ABI)/grown/$(SHARED_SONAME): $(LIB_SRC) $(wildcard src/*.h) $(ABI)/grown/skipless.h
	$(CC) -I$(ABI)/grown $(CFLAGS_ALL) -fPIC -fvisibility=hidden -shared -Wl,-soname,$(SHARED_SONAME) \
	  $(LDFLAGS_ALL) $(LIB_SRC) -o $@ $(LIBS)

$(ABI)/caller: test/abi/caller.c test/abi/skipless-1.0.h $(SHARED)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) test/abi/caller.c $(LDFLAGS_ALL) -L$(LIBDIR) -l:$(SHARED_SONAME) -o $@

check-abi: $(ABI)/caller $(ABI)/grown/$(SHARED_SONAME)
	cd test/abi && sha256sum --quiet -c skipless-1.0.h.sha256 # frozen: the header 1.0 shipped, never edited
	LD_LIBRARY_PATH=$(abspath $(LIBDIR)) $(ABI)/caller $(DEFAULT_MODEL)
	LD_LIBRARY_PATH=$(abspath $(ABI)/grown) $(ABI)/caller $(DEFAULT_MODEL)
	@if LD_LIBRARY_PATH=$(abspath $(ABI)/grown) ldd $(ABI)/caller | grep -q '$(abspath $(ABI)/grown)/$(SHARED_SONAME)'; \
	  then echo "abi: the grown library was the one loaded"; else echo "abi: the grown library was not loaded" >&2; exit 1; fi

# The bindings load the shared library into an uninstrumented interpreter/binary, so they
# are not run under SANITIZE=1 (ASan would have to be preloaded).
check-python: $(SHARED) $(CLI) $(MODELS)
ifeq ($(SANITIZE),1)
	@echo "check-python: skipped under SANITIZE=1"
else
	@for py in $(PYTHONS); do \
	  echo "python bindings: $$py ($$($$py -c 'import sys; print(sys.version.split()[0])'))"; \
	  (cd examples/python/tests && $(BIND_ENV) $$py -m unittest -q 2>&1) || exit 1; \
	done
endif

check-rust: $(SHARED) $(CLI) $(MODELS)
ifeq ($(SANITIZE),1)
	@echo "check-rust: skipped under SANITIZE=1"
else ifeq ($(NO_RUST),1)
	@echo "check-rust: skipped (NO_RUST=1)"
else ifeq ($(CARGO),)
	@echo "check-rust: cargo not found on PATH or in ~/.cargo/bin; install Rust (e.g. apt-get install cargo) or run with NO_RUST=1" >&2; exit 1
else
	cd examples/rust && $(BIND_ENV) $(CARGO) test --offline -q
	cd examples/rust && $(BIND_ENV) $(CARGO) build --offline -q --examples
	sh examples/rust/test_pkgconfig.sh $(CARGO) $(CLI) $(B)/testmodels/models/serial_mha_silu_glu
endif

# Benchmark (not part of check; 15-25 min, ~14 GB of generated models in $(B)/bench/models):
# bench/run.sh generates the models once, runs `skipless bench`, prints the tables and
# writes $(B)/bench/*.json and the plot docs/performance.png (docs/performance.md).
bench: deps
	$(MAKE) all
	sh bench/run.sh $(CLI) $(B)/bench

# Merge benchmark (not part of check; about 2 min plus 30 s to generate a 2.8 GB model once in
# $(B)/bench/models): the in-memory merge of a 7B-shaped 2-layer model against a dgemm measured
# in the same run (bench/merge.sh, docs/merge.md).  MERGE_THREADS (2), MERGE_LAYERS (2).
MERGE_BENCH := $(B)/bench/merge_bench
$(MERGE_BENCH): bench/merge_bench.c src/cli/util.c src/cli/util.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) bench/merge_bench.c src/cli/util.c $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

bench-merge: $(MERGE_BENCH)
	sh bench/merge.sh $(MERGE_BENCH) $(B)/bench

# The paper's table, measured (not part of check; about an hour at 32 layers, ~30 GB of disk in
# $(B)/bench/7b): a seeded Mistral-7B-shaped BF16 checkpoint in 5GB shards (bench/make_7b.py, once),
# `skipless info`, the merge (wall time, peak RssAnon, GFLOP/s against dgemm), its verification, and
# decode of the original, the merged model and shape S F32 (bench/bench_7b.sh, bench/report_7b.py,
# docs/performance.md).  BENCH_7B_LAYERS (32; e.g. 2 checks the harness in minutes), BENCH_7B_DIR,
# BENCH_7B_ROUNDS (3), BENCH_7B_THREADS (2): see bench/bench_7b.sh.
bench-7b: $(MERGE_BENCH) $(CLI)
	sh bench/bench_7b.sh $(CLI) $(MERGE_BENCH)

# Quantized GEMV kernels (not part of check; about 5 min, 1-2 GB of memory): every Q8_0 / Q4_0
# implementation this CPU runs (src/qkernels.c; both activation strategies, the AVX2 ones forced
# on an AVX-512 machine) on four decode shapes, 1 and 2 threads, against F32 skl_gemv and a
# fresh-buffer streaming read measured in the same run (bench/qgemv_bench.c).  QGEMV_ARGS passes
# options, e.g. QGEMV_ARGS="--rounds 9 --threads 2".
QGEMV_BENCH := $(B)/bench/qgemv_bench
$(QGEMV_BENCH): bench/qgemv_bench.c src/cli/membw.c src/cli/membw.h src/cli/util.c src/cli/util.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) bench/qgemv_bench.c src/cli/membw.c src/cli/util.c $(STATIC) $(LDFLAGS_ALL) $(LIBS) -o $@

.PHONY: bench-qgemv
bench-qgemv: $(QGEMV_BENCH)
	$(QGEMV_BENCH) $(QGEMV_ARGS)

# Peak RssAnon of `skipless merge`, streamed and --in-memory, on a generated 16-layer
# hidden-1024 F32 model (0.94 GB in $(B)/bench/models; docs/merge.md, "Memory").
.PHONY: bench-merge-memory
bench-merge-memory: $(CLI)
	sh bench/merge_memory.sh $(CLI) $(B)/bench

run: deps
	$(MAKE) all
	$(BINDIR)/demo $(DEFAULT_MODEL) "$(or $(PROMPT),And God said)" 200 1

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
	rm -rf build lib bin examples/rust/target

# Every allocation failure survived (docs/reliability.md): test/alloc/alloc_sweep.c against the
# AddressSanitizer build, the library's malloc/calloc/realloc/strdup wrapped at link time and
# jansson's through json_set_alloc_funcs; the n-th allocation fails for every n of each scenario
# (every n up to ALLOC_STRIDE_AFTER, then every 7th); LeakSanitizer after each.
ALLOC_STRIDE_AFTER ?= 4000
.PHONY: check-alloc
check-alloc: $(MODELS)
	$(MAKE) SANITIZE=1 build/san/lib/libskipless.a
	$(CC) -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Iinclude -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=all test/alloc/alloc_sweep.c build/san/lib/libskipless.a \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup $(LIBS) -o build/san/alloc_sweep
	OPENBLAS_NUM_THREADS=1 build/san/alloc_sweep $(B)/testmodels $(ALLOC_STRIDE_AFTER)

# ThreadSanitizer (docs/reliability.md): the library and test/tsan/threads.c built with clang
# -fsanitize=thread into build/tsan: 4 threads on one shared model (contexts of different thread
# counts whose prefill logits must not depend on each other, decode, tokenize, merge).
TSAN := build/tsan
TSAN_OBJ := $(patsubst src/%.c,$(TSAN)/obj/%.o,$(LIB_SRC))
.PHONY: check-tsan
.SECONDARY: $(TSAN_OBJ)
$(TSAN)/obj/%.o: src/%.c include/skipless.h $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Iinclude -Isrc -fsanitize=thread -c $< -o $@
$(TSAN)/threads: test/tsan/threads.c $(TSAN_OBJ)
	clang -std=c11 -D_GNU_SOURCE -O1 -g $(WARN) -Iinclude -fsanitize=thread $< $(TSAN_OBJ) $(LIBS) -o $@
check-tsan: $(TSAN)/threads $(MODELS)
	TSAN_OPTIONS="suppressions=test/tsan/suppressions.txt halt_on_error=1 second_deadlock_stack=1" \
	  $(TSAN)/threads $(B)/testmodels
