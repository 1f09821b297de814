// Command guest is Custos' built-in masking module: filters/mask/engine
// behind the ABI of docs/masking-abi.md, built for WASI with
//
//	make wasm
//
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, see the Makefile
// for the exact flags) into custos-mask.wasm, which the host embeds. The
// exports live in abi_wasip1.go; on other platforms this is an empty
// program, so go vet and go build ./... see the package.
package main

func main() {}
