// The two declarations the Jazzer.js addon takes from libFuzzer's internal FuzzerDefs.h,
// which Debian's libclang-rt-14-dev does not install (it ships only the static library).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fuzzer {
typedef int (*UserCallback)(const uint8_t *Data, size_t Size);
int FuzzerDriver(int *argc, char ***argv, UserCallback Callback);
}  // namespace fuzzer
