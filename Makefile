# Weft build. `make` builds build/weft; `make test` runs the whole suite
# (see scripts/test.sh). Variables: CC (gcc|clang), SAN=1 (ASan+UBSan build
# in build-san/), O (optimisation level).
CC ?= gcc
O ?= 2
PKGS := libdeflate liburing libsodium jansson libcurl libpq
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))

ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else
BUILD ?= build
SANFLAGS :=
endif

CFLAGS := -std=c17 -O$(O) -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
          -D_GNU_SOURCE -pthread $(SANFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SANFLAGS)
LIBS := $(PKG_LIBS) -lpg_query -lm

SRCS := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
LOADGEN_SRCS := $(filter-out bench/floor.c,$(wildcard bench/*.c))
LOADGEN_OBJS := $(LOADGEN_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all clean test unit unit-bins run loadgen bench
all: $(BUILD)/weft

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libweft.a: $(LIB_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/weft: $(BUILD)/src/main.o $(BUILD)/libweft.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The benchmark load generator (bench/): of weft it uses only the batched
# socket I/O (src/net/iobatch.c), the same way for every server it measures.
$(BUILD)/bench/%.o: CFLAGS += -Isrc
$(BUILD)/loadgen: $(LOADGEN_OBJS) $(BUILD)/libweft.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The loopback write floor (bench/floor.c): a single-file program.
$(BUILD)/floor: $(BUILD)/bench/floor.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

loadgen: $(BUILD)/loadgen $(BUILD)/floor

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(BUILD)/libweft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libweft.a $(LIBS)

# Tests against a real Postgres (tests/pg/, libpq; run through tests/pg/pgtmp.py).
PG_TEST_SRCS := $(wildcard tests/pg/*.c)
PG_TEST_BINS := $(PG_TEST_SRCS:tests/pg/%.c=$(BUILD)/tests/%)
$(BUILD)/tests/%: tests/pg/%.c tests/pg/pgtest.h tests/unit/check.h $(BUILD)/libweft.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Isrc -o $@ $< $(BUILD)/libweft.a $(LIBS)

unit-bins: $(TEST_BINS) $(PG_TEST_BINS)

unit: $(TEST_BINS)
	@set -e; for t in $(TEST_BINS); do echo "== $$t"; $$t; done

test:
	bash scripts/test.sh

# The benchmark against its peers (bench/run.sh full; bench/run.sh quick for
# a 2-minute run).
bench:
	bash bench/run.sh full

run:
	bash scripts/run.sh

clean:
	rm -rf build build-san build-clang build-fuzz

-include $(LIB_OBJS:.o=.d) $(BUILD)/src/main.d $(LOADGEN_OBJS:.o=.d)
