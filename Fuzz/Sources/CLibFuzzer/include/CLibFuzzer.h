#ifndef C_LIB_FUZZER_H
#define C_LIB_FUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (libclang_rt.fuzzer_no_main): parses libFuzzer's flags from argv and calls
/// `test` with each input. Our executables call it from their own main, because SwiftPM gives
/// every executable a main of its own, which libFuzzer's main would clash with.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test)(const uint8_t *data, size_t size));

#endif
