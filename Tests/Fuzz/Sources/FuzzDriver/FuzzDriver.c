// Declarations only: LLVMFuzzerRunDriver comes from the fuzzer runtime linked with -sanitize=fuzzer.
#include "FuzzDriver.h"
