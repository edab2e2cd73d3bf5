# Granary's front door. `make run` and `make test` are all a fresh clone
# needs: both install missing packages first (scripts/install-deps).

BUILD   ?= build
ASAN    ?= build-asan
RELEASE ?= build-release
FUZZ    ?= build-fuzz
MESON_FLAGS ?=

.PHONY: all deps build web run test bench fuzz fuzz-build format clean asan release

all: build web

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)
	@ln -sf src/granary/granary $(BUILD)/granary
	@ln -sf src/bridge/granary-http-bridge $(BUILD)/granary-http-bridge

web: deps
	cd web && npx vite build --logLevel warn

$(ASAN)/build.ninja:
	meson setup $(ASAN) -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug $(MESON_FLAGS)

asan: deps $(ASAN)/build.ninja
	ninja -C $(ASAN)
	@ln -sf src/granary/granary $(ASAN)/granary
	@ln -sf src/bridge/granary-http-bridge $(ASAN)/granary-http-bridge

$(RELEASE)/build.ninja:
	meson setup $(RELEASE) -Dbuildtype=release -Db_lto=true -Dtests=false -Db_ndebug=true $(MESON_FLAGS)

release: deps $(RELEASE)/build.ninja
	ninja -C $(RELEASE)
	@ln -sf src/granary/granary $(RELEASE)/granary
	@ln -sf src/bridge/granary-http-bridge $(RELEASE)/granary-http-bridge

$(FUZZ)/build.ninja:
	CC=clang meson setup $(FUZZ) -Dfuzzing=true -Dtests=false -Db_sanitize=address,undefined \
	    -Db_lundef=false -Dbuildtype=debugoptimized $(MESON_FLAGS)

fuzz-build: deps $(FUZZ)/build.ninja
	ninja -C $(FUZZ)

run: build web
	@echo "The example app's package is $(BUILD)/apps/notes/notes.spk: install it from the shell's Apps page."
	$(BUILD)/granary run

test: build web asan fuzz-build
	scripts/run-tests

bench: build release web
	bench/run-all

# Longer fuzzing than the smoke run of `make test`: FUZZ_SECONDS per target.
fuzz: fuzz-build
	GRANARY_SUITES=fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-300} scripts/run-tests

format:
	find src tests bench apps -name '*.[ch]' -print0 | xargs -0 -r clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN) $(RELEASE) $(FUZZ) web/dist
