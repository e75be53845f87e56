# slmprobe: one binary, `slmprobe <command>`.
#   make              release build (./slmprobe)
#   make test         ASan+UBSan build, then every tests/test_*.c binary
#   make run          build, default model, embedded server, every probe -> results/
#   make bench        benchmarks (see BENCHMARKS.md)
#   make install PREFIX=/usr/local   (binary, man page, bash completion; make uninstall)
#   make SANITIZER=thread test   (threaded parts under TSan)
#   make fuzz | fuzz-pack | fuzz-campaign   (libFuzzer targets; see the rules below)
#   make DEBUG=1      -O0
CC       ?= cc
PREFIX   ?= /usr/local
VERSION  := $(shell git describe --always --dirty --tags 2>/dev/null || echo 0.1.0)

comma := ,
NPROC   := $(shell nproc 2>/dev/null || echo 2)
SANITIZER ?=
ifeq ($(SANITIZER),)
  BUILD := obj
else
  BUILD := obj-$(subst $(comma),-,$(SANITIZER))
endif

WARN    := -Wall -Wextra -Wstrict-prototypes -Wshadow -Wvla -Wno-unused-parameter
ifeq ($(CI),true)
  WARN += -Werror
endif
OPT     := -O2 -g
ifeq ($(DEBUG),1)
  OPT   := -O0 -g
endif
PKGS    := libcurl jansson libevent libevent_pthreads libxxhash icu-uc
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread -fopenmp $(WARN) $(OPT) -MMD -MP \
           -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread \
           -DSLMPROBE_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lopenblas -lm -ldl -pthread -fopenmp
ifneq ($(SANITIZER),)
  CFLAGS  += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=$(SANITIZER)
endif

SRC      := $(wildcard src/*/*.c)

# The CUDA backend (docs/serve.md): `make CUDA=1` compiles src/engine/cuda/*.cu with nvcc for
# sm_90 (H100/H200) plus PTX for later chips, links cuBLAS(Lt) and cudart, and leaves out
# forward_dev_none.c. Objects go to obj-cuda (obj-cuda-SANITIZER), the binary is ./slmprobe.
ifeq ($(CUDA),1)
  NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
  ifeq ($(strip $(NVCC)),)
    $(error make CUDA=1 needs nvcc (the CUDA toolkit): not on PATH nor in /usr/local/cuda/bin)
  endif
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  BUILD     := $(subst obj,obj-cuda,$(BUILD))
  CUDA_SRC  := $(wildcard src/engine/cuda/*.cu)
  CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
  SRC       := $(filter-out src/engine/forward_dev_none.c,$(SRC))
  NVCCFLAGS ?= -O3 -std=c++17 -lineinfo -Isrc -DSLM_CUDA=1 \
               -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
  CFLAGS    += -DSLM_CUDA=1 -I$(CUDA_HOME)/include
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart \
               -lstdc++
endif
LIB_OBJ  := $(SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/src/main.o
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
BIN      := $(if $(SANITIZER),$(BUILD)/slmprobe,slmprobe)

.PHONY: all deps test tests test-cuda bench-cuda run bench install uninstall man completion clean \
        check-headers fmt fuzz fuzz-build fuzz-pack fuzz-campaign
all: deps $(BIN)

deps:
	@sh scripts/deps.sh

# Everything but main.o goes into an archive, so a binary pulls in only the objects it uses.
LIBA     := $(BUILD)/libslm.a
$(LIBA): $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.cu $(wildcard src/*/*.h src/engine/cuda/*.cuh src/engine/cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# ./slmprobe is shared by the CPU and the CUDA build: .slmprobe-flavour names the object tree the
# binary was last linked from and changes when that does, so `make` after `make CUDA=1` (or the
# other way round) relinks instead of keeping the other flavour's binary.
ifeq ($(SANITIZER),)
  $(shell [ "$$(cat .slmprobe-flavour 2>/dev/null)" = "$(BUILD)" ] || echo "$(BUILD)" > .slmprobe-flavour)
  $(BIN): .slmprobe-flavour
endif
$(BIN): $(MAIN_OBJ) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

# The fuzz replay test also runs a differential check against libhttp-parser (test only).
$(BUILD)/tests/test_fuzz_replay: LDLIBS += -lhttp_parser

# Tests run against the sanitized binary of the same flavour (SLMPROBE_BIN).
tests: $(BIN) $(TESTS)

test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) SANITIZER=$(or $(SANITIZER),address$(comma)undefined) tests
	@$(MAKE) --no-print-directory SANITIZER=$(or $(SANITIZER),address$(comma)undefined) run-tests

run-tests: tests
	@SLMPROBE_BIN=$(abspath $(BIN)) sh tests/run.sh $(TESTS)

# The CUDA backend's tests (tests/cuda/test_*.c) and benchmark (bench/cuda/bench_cuda.c), for a
# machine with a GPU: `make CUDA=1 test-cuda`, `make CUDA=1 bench-cuda`. Built WITHOUT
# sanitizers: ASan reserves the low shadow memory the CUDA driver maps into and reports its
# allocations as leaks or crashes at start-up, so a sanitized binary cannot create a context.
CUDA_TESTS := $(patsubst tests/cuda/%.c,$(BUILD)/tests/cuda/%,$(wildcard tests/cuda/test_*.c))
CUDA_BENCH := $(BUILD)/bench/cuda/bench_cuda
ifeq ($(CUDA),1)
test-cuda:
	@if [ -n "$(SANITIZER)" ]; then echo "make test-cuda: no SANITIZER (ASan and the CUDA runtime conflict)"; exit 1; fi
	@$(MAKE) --no-print-directory -j$(NPROC) CUDA=1 $(CUDA_TESTS) $(CUDA_BENCH)
	@fail=0; for t in $(CUDA_TESTS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

bench-cuda:
	@$(MAKE) --no-print-directory -j$(NPROC) CUDA=1 $(CUDA_BENCH)
	$(CUDA_BENCH)

$(BUILD)/bench/cuda/%: bench/cuda/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)
else
test-cuda bench-cuda:
	@echo "make $@ needs the CUDA backend: run \`make CUDA=1 $@\` (nvcc and cuBLAS, and a GPU to run on)"; exit 1
endif

run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	@sh scripts/run.sh

bench: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all $(BENCHES)
	@sh bench/run.sh $(BUILD)

# The man page and the bash completion are generated from the --help texts of the binary being
# installed (scripts/gen_man.sh, scripts/gen_completion.sh), so they cannot drift. install uses
# this flavour's binary ($(BIN)): `make SANITIZER=address,undefined install` installs that one.
MANDIR   ?= $(PREFIX)/share/man
COMPDIR  ?= $(PREFIX)/share/bash-completion/completions
MAN_PAGE := $(BUILD)/slmprobe.1
COMPLETION := $(BUILD)/slmprobe.bash
INSTALLED := $(DESTDIR)$(PREFIX)/bin/slmprobe $(DESTDIR)$(MANDIR)/man1/slmprobe.1 \
             $(DESTDIR)$(COMPDIR)/slmprobe

$(MAN_PAGE): $(BIN) scripts/gen_man.sh
	@mkdir -p $(dir $@)
	sh scripts/gen_man.sh $(abspath $(BIN)) $@

$(COMPLETION): $(BIN) scripts/gen_completion.sh
	@mkdir -p $(dir $@)
	sh scripts/gen_completion.sh $(abspath $(BIN)) $@

man: $(MAN_PAGE)
completion: $(COMPLETION)

install: deps $(BIN) $(MAN_PAGE) $(COMPLETION)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPDIR)
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/slmprobe
	install -m 644 $(MAN_PAGE) $(DESTDIR)$(MANDIR)/man1/slmprobe.1
	install -m 644 $(COMPLETION) $(DESTDIR)$(COMPDIR)/slmprobe

# Removes the files install put there (the directories stay: they may be shared).
uninstall:
	rm -f $(INSTALLED)

check-headers:
	@for h in $(wildcard src/*/*.h); do \
	  echo "#include \"$${h#src/}\"" | $(CC) $(CFLAGS) -x c -fsyntax-only - || exit 1; done; \
	  echo "headers ok"

# libFuzzer targets: fuzz/fuzz_NAME.c names the sources it needs on lines "fuzz-sources: ...",
# optionally pkg-config packages on "fuzz-libs: ...". Seeds: tests/data/fuzz-NAME/ (else
# tests/data/); new inputs go to obj-fuzz/corpus-NAME. A run fails on a crash, a leak, an input
# taking over FUZZ_TIMEOUT_S seconds or RSS over FUZZ_RSS_MB. tests/test_fuzz_replay.c replays the
# seed directories through the same entry points in `make test`.
FUZZ_SECONDS ?= 30
FUZZ_TIMEOUT_S ?= 1
FUZZ_RSS_MB ?= 2048
# Largest input per target (libFuzzer -max_len; seeds longer than it are cut): what one unit of
# the format needs, not more, since every target's cost grows with input length. Log lines and
# SSE events are short (a few lines: 2 KiB; the longer start-up log seeds also come split in
# parts under 2 KiB); a tokenizer input is a vocabulary plus text; a GGUF seed is a whole
# 24.8 KB header (tiny preset); Prometheus pages are several KB. fuzz/campaign.sh reads the same
# numbers from the pack's targets.txt (make fuzz-pack).
FUZZ_MAX_LEN_chunk_scan := 4096
FUZZ_MAX_LEN_gguf       := 32768
FUZZ_MAX_LEN_http       := 4096
FUZZ_MAX_LEN_logparse   := 2048
FUZZ_MAX_LEN_openai     := 4096
FUZZ_MAX_LEN_prom       := 8192
FUZZ_MAX_LEN_sse        := 2048
FUZZ_MAX_LEN_tokenizer  := 2048
FUZZ_NAMES   := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS := $(FUZZ_NAMES:%=obj-fuzz/fuzz_%)
obj-fuzz/fuzz_%: fuzz/fuzz_%.c $(SRC) $(wildcard src/*/*.h)
	@mkdir -p obj-fuzz
	clang -std=c11 -D_GNU_SOURCE -g -O1 -Isrc -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=undefined -o $@ $< \
	  $$(sed -n 's/.*fuzz-sources: *\([^*]*\).*/\1/p' $<) \
	  $$(pkg-config --cflags --libs jansson $$(sed -n 's/.*fuzz-libs: *\([^*]*\).*/\1/p' $< | head -1)) -lm

fuzz-build: $(FUZZ_TARGETS)

fuzz: fuzz-build
	@for tl in $(foreach n,$(FUZZ_NAMES),$(n):$(FUZZ_MAX_LEN_$(n))); do \
	  n=$${tl%:*}; len=$${tl#*:}; t=obj-fuzz/fuzz_$$n; \
	  seeds=tests/data/fuzz-$$n; [ -d $$seeds ] || seeds=tests/data/; \
	  echo "fuzz: $$n ($(FUZZ_SECONDS) s, -max_len=$$len, seeds $$seeds)"; \
	  mkdir -p obj-fuzz/corpus-$$n; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT_S) -rss_limit_mb=$(FUZZ_RSS_MB) \
	    -malloc_limit_mb=$(FUZZ_RSS_MB) -max_len=$$len -print_final_stats=1 \
	    -artifact_prefix=obj-fuzz/$$n- obj-fuzz/corpus-$$n $$seeds || \
	    { echo "fuzz: $$n FAILED"; exit 1; }; \
	done

# A self-contained pack for running the campaign on another x86-64 Linux machine (glibc >= 2.36,
# no clang or libraries needed): obj-fuzz/fuzz-pack.tar.xz holds fuzz-pack/bin/ (the targets,
# DWARF stripped, symbols kept for ASan's stack traces), lib/ (the shared libraries ldd lists
# but glibc's own), seeds/NAME/, targets.txt ("NAME MAX_LEN", slowest target first, the order
# campaign.sh runs them in) and campaign.sh. Run: tar -xJf fuzz-pack.tar.xz &&
# bash fuzz-pack/campaign.sh -n 10000000 -j 8 -p 2 -o OUT (fuzz/campaign.sh says more).
FUZZ_CAMPAIGN_ORDER := logparse sse tokenizer openai gguf http prom chunk_scan
FUZZ_PACK := obj-fuzz/fuzz-pack.tar.xz
fuzz-pack: $(FUZZ_PACK)
$(FUZZ_PACK): $(FUZZ_TARGETS) fuzz/campaign.sh $(wildcard tests/data/* tests/data/fuzz-*/*)
	rm -rf obj-fuzz/pack && mkdir -p obj-fuzz/pack/fuzz-pack/bin obj-fuzz/pack/fuzz-pack/lib
	set -e; p=obj-fuzz/pack/fuzz-pack; : > $$p/targets.txt; \
	for tl in $(foreach n,$(FUZZ_CAMPAIGN_ORDER),$(n):$(FUZZ_MAX_LEN_$(n))); do \
	  n=$${tl%:*}; echo "$$n $${tl#*:}" >> $$p/targets.txt; \
	  objcopy --strip-debug obj-fuzz/fuzz_$$n $$p/bin/fuzz_$$n; \
	  mkdir -p $$p/seeds/$$n; \
	  if [ -d tests/data/fuzz-$$n ]; then cp tests/data/fuzz-$$n/* $$p/seeds/$$n/; \
	  else find tests/data -maxdepth 1 -type f -exec cp {} $$p/seeds/$$n/ \; ; fi; \
	done; \
	for l in $$(ldd $$p/bin/fuzz_* | awk '$$2 == "=>" {print $$3}' | sort -u); do \
	  case $${l##*/} in libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*) ;; \
	  *) cp -L $$l $$p/lib/ ;; esac; \
	done; \
	cp fuzz/campaign.sh $$p/; \
	[ $$(wc -l < $$p/targets.txt) -eq $(words $(FUZZ_NAMES)) ] || \
	  { echo "fuzz-pack: FUZZ_CAMPAIGN_ORDER does not list every fuzz/fuzz_*.c"; exit 1; }
	tar -C obj-fuzz/pack -cJf $@.tmp fuzz-pack && mv $@.tmp $@
	@ls -l $@

# The campaign here, from the pack as another machine would run it: FUZZ_RUNS executions per
# target over FUZZ_WORKERS workers, FUZZ_AT_ONCE targets at a time; results in obj-fuzz/campaign/.
FUZZ_RUNS ?= 100000
FUZZ_WORKERS ?= 1
FUZZ_AT_ONCE ?= $(NPROC)
fuzz-campaign: $(FUZZ_PACK)
	rm -rf obj-fuzz/campaign && mkdir -p obj-fuzz/campaign
	tar -C obj-fuzz/campaign -xJf $(FUZZ_PACK)
	bash obj-fuzz/campaign/fuzz-pack/campaign.sh -n $(FUZZ_RUNS) -j $(FUZZ_WORKERS) \
	  -p $(FUZZ_AT_ONCE) -o obj-fuzz/campaign/out

fmt:
	clang-format -i src/*/*.c src/*/*.h src/*.c tests/*.c tests/*.h

clean:
	rm -rf obj obj-* slmprobe .slmprobe-flavour

-include $(shell find obj obj-* -name '*.d' 2>/dev/null)
