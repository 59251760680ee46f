// tests/fuzz/fuzz_target.h
// What every fuzz target in tests/fuzz/ defines: libFuzzer's entry point. Each target feeds the
// bytes to one parser of untrusted input and requires only that it returns (a status) without
// crashing, hanging or tripping a sanitizer. Built two ways (tests/CMakeLists.txt): with
// replay_main.cc as an ordinary test over the seed corpus in tests/fuzz/corpus/<target>/ (every
// build), and with clang's -fsanitize=fuzzer by scripts/fuzz.sh.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
