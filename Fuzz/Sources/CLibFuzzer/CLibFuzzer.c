// Declarations only: the driver itself comes from libclang_rt.fuzzer_no_main at link time.
#include "CLibFuzzer.h"
