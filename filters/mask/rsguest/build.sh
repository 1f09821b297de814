#!/bin/sh
# Builds custos-mask-rs.wasm (rustc 1.63 of Debian, std only, no cargo).
# Run from the repository's root; the output is $1, else the committed module.
set -e
/usr/bin/rustc --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib -C opt-level=3 -C panic=abort -C lto -C codegen-units=1 -C target-feature=+bulk-memory,+simd128,+multivalue --remap-path-prefix=$PWD=. -o "${1:-filters/mask/rsguest/custos-mask-rs.wasm}" filters/mask/rsguest/lib.rs
