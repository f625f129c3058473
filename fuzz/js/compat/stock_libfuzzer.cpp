// Lets the Jazzer.js 2.1.0 addon run on Debian's stock libFuzzer (LLVM 14) instead of the
// patched fork its CMake build downloads (no download is possible here). The fork adds three
// entry points; this file provides them on top of the stock ones.
#include <cstdint>

extern "C" {
void __sanitizer_cov_trace_const_cmp8(uint64_t arg1, uint64_t arg2);
void __sanitizer_cov_trace_pc_indir(uintptr_t callee);
void __jazzer_set_death_callback(void (*callback)());

// The fork takes the comparison's id from JavaScript; stock libFuzzer takes it from the
// caller's return address, so every JS comparison shares one id here. Comparison operands
// still feed libFuzzer's table of recent compares (the dictionary-like mutations); only
// -use_value_profile loses precision.
void __sanitizer_cov_trace_const_cmp8_with_pc(uintptr_t, uint64_t arg1, uint64_t arg2) {
  __sanitizer_cov_trace_const_cmp8(arg1, arg2);
}

void __sanitizer_cov_trace_pc_indir_with_pc(void *, uintptr_t callee) {
  __sanitizer_cov_trace_pc_indir(callee);
}

// Stock libFuzzer hands its death callback (write the crashing input, print final stats) to
// a sanitizer runtime through this hook; route it to the addon, which calls it when a fuzz
// target throws. Without it the addon would call a null pointer on the first finding.
void __sanitizer_set_death_callback(void (*callback)()) { __jazzer_set_death_callback(callback); }
}
