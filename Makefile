# ztwizard: `make run` opens the wizard on the example site, `make test`
# installs what the tests need and runs them all.

GO      ?= go
BIN     ?= bin/ztwizard
SCRATCH ?= $(CURDIR)/.scratch
FUZZTIME ?= 20s

.PHONY: run test check deps build fuzz bench clean

## run: the wizard on the embedded example site; its state and saved site.yaml go to a scratch folder
run:
	CGO_ENABLED=0 $(GO) run ./cmd/ztwizard wizard --example --state $(SCRATCH)/state -c $(SCRATCH)/site.yaml

## build: the ztwizard binary in ./bin (or BIN=path), static: without cgo it
## runs on a node whatever its C library, and starts a millisecond sooner
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/ztwizard

## deps: Debian packages (openssl, ssh-keygen, sshd) and Go modules
deps:
	./scripts/deps.sh

## test: everything, real-component tests included, then a short fuzz run
test: deps
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 45m ./...
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	$(MAKE) fuzz

## check: the fast inner loop: gofmt, vet, unit tests
check:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -short ./...

## fuzz: the site loader, and rendering checked by nginx, sshd and nft, under the fuzzer
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./steps/
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s ./steps/

## bench: benchmarks and side-by-side comparisons (see BENCHMARKS.md)
bench: deps
	./bench/run.sh

clean:
	rm -rf bin $(SCRATCH)
