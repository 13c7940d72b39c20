// mpkernel's modern emulated board: the qemu port's configuration, plus what a real board has.
// This file shadows ports/qemu/mpconfigport.h (this folder comes first on the include path),
// includes it, and changes only the options below, so MicroPython's files stay untouched.

#include "ports/qemu/mpconfigport.h"

// Real boards have these; the stock qemu build leaves them out.
#undef MICROPY_PY_SYS_STDIO_BUFFER
#define MICROPY_PY_SYS_STDIO_BUFFER (1)
#undef MICROPY_PY_SELECT
#define MICROPY_PY_SELECT           (1)
#undef MICROPY_PY_TIME
#define MICROPY_PY_TIME             (1)
#define MICROPY_PY_TIME_TIME_TIME_NS (1)
#define MICROPY_PY_TIME_INCLUDEFILE "board_time.h"
#define MICROPY_PY_DEFLATE_COMPRESS (1)
#define MICROPY_PY_OS_UNAME         (1)
uint32_t mpk_random_seed(void);
#define MICROPY_PY_RANDOM_SEED_INIT_FUNC (mpk_random_seed())

// machine.reset() reboots the board (the port's own version ends QEMU), machine.idle() waits.
#undef MICROPY_PY_MACHINE_INCLUDEFILE
#define MICROPY_PY_MACHINE_INCLUDEFILE "board_machine.h"

// Mount the filesystem, run boot.py and main.py (board.c), on every (soft) reset.
void mpk_board_init(void);
#define MICROPY_PORT_INIT_FUNC mpk_board_init()

// Waiting for an event (select.poll, asyncio-style loops) sleeps the CPU until an interrupt:
// the UART, or the 1 ms tick. An idle board then costs the host almost nothing.
#define MICROPY_INTERNAL_WFE(TIMEOUT_MS) __asm volatile ("wfi")
