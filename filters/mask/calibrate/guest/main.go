// Command guest is the calibration scanner (package calibrate) as a
// WebAssembly module, built by BenchmarkCalibration in filters/mask with
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared. The exports live in
// abi_wasip1.go; on other platforms this is an empty program.
package main

func main() {}
