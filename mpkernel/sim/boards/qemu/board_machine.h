// Included by extmod/modmachine.c (MICROPY_PY_MACHINE_INCLUDEFILE).

#include "py/mphal.h"

void mpk_system_reset(void);
void mpk_idle(void);
int mpk_reset_cause(void);

static void mp_machine_idle(void) {
    mpk_idle();
}

// Like a real board: the CPU resets, the emulator keeps running, files are kept.
NORETURN static void mp_machine_reset(void) {
    mpk_system_reset();
    for (;;) {
    }
}

static mp_int_t mp_machine_reset_cause(void) {
    return mpk_reset_cause();
}
