export UPSCALED_CACHE ?= $(CURDIR)/.cache
CARGO ?= cargo

.PHONY: setup run test bench

# nasm gives rav1e (AVIF) its fast paths; installed where we can (root + apt).
setup:
	@command -v nasm >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq nasm >/dev/null 2>&1) || echo "note: nasm not installed; AVIF encoding will be slower"
	$(CARGO) build --release
	./target/release/upscaled fetch-samples
	./target/release/upscaled models fetch

run: setup
	@echo "Until the daemon lands, 'make run' runs 'process' on an example photo."
	./target/release/upscaled process $(UPSCALED_CACHE)/samples/astronaut.png --preset shopify -o example/out

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test
