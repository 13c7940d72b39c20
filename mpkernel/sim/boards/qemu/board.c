// mpkernel's modern emulated board: what a real MicroPython board has and the stock qemu port
// lacks. UART input through an interrupt and a ring buffer (so Ctrl-C stops running code and
// an idle board sleeps), a SysTick clock for the time module, the host's clock, a system reset,
// and start-up that mounts the filesystem and runs boot.py and main.py.

#include <stdint.h>

#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "shared/runtime/pyexec.h"

// Cortex-M3 system registers.
#define SCS_REG(off) (*(volatile uint32_t *)(0xe000e000u + (off)))
#define SYST_CSR SCS_REG(0x010)
#define SYST_RVR SCS_REG(0x014)
#define SYST_CVR SCS_REG(0x018)
#define NVIC_ISER0 SCS_REG(0x100)
#define NVIC_ISPR0 SCS_REG(0x200)
#define SCB_VTOR SCS_REG(0xd08)
#define SCB_AIRCR SCS_REG(0xd0c)

// CMSDK APB UART0 of the MPS2 AN385, as the port's uart.c sets it up.
typedef struct {
    volatile uint32_t DATA;
    volatile uint32_t STATE;
    volatile uint32_t CTRL;
    volatile uint32_t INTSTATUS; // writing 1 clears
    volatile uint32_t BAUDDIV;
} uart_t;
#define UART0 ((uart_t *)0x40004000u)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_RX_INT (1u << 3)
#define UART_INT_RX (1u << 1)
#define UART0_RX_IRQ (0)

// AN385 runs the CPU at 25 MHz; SysTick counts CPU cycles. It interrupts every 10 ms, not
// every 1: each interrupt wakes QEMU on the host, and an idle board should cost it little.
// Milliseconds come from the counter in between, so time still has 1 ms resolution.
#define CPU_HZ (25000000u)
#define CYCLES_PER_MS (CPU_HZ / 1000u)
#define TICK_MS (10u)

#define EXC_SYSTICK (15)
#define N_VECTORS (16 + 32)

// Received bytes wait here until MicroPython reads them. When it is full, the interrupt is
// switched off and the next byte stays in the UART, which makes QEMU stop reading the pty:
// the host's writes back up instead of bytes being lost.
#define RX_RING_SIZE (4096u)
static uint8_t rx_ring[RX_RING_SIZE];
static volatile uint32_t rx_head; // written by the interrupt
static volatile uint32_t rx_tail; // written by the reader

static volatile uint32_t tick_base_ms; // advanced by TICK_MS per SysTick interrupt
static uint64_t boot_time_ns; // host clock at boot, from semihosting

// The port's vector table stops at SysTick and is in ROM; ours adds the UART's interrupt.
static uint32_t vectors[N_VECTORS] __attribute__((aligned(256)));

static inline void wait_for_interrupt(void) {
    __asm volatile ("wfi" : : : "memory");
}

static void systick_handler(void) {
    tick_base_ms = tick_base_ms + TICK_MS;
}

static void uart0_rx_handler(void) {
    // Clear first: a byte arriving after the last check below raises the interrupt again.
    UART0->INTSTATUS = UART_INT_RX;
    while (UART0->STATE & UART_STATE_RXFULL) {
        if (rx_head - rx_tail >= RX_RING_SIZE) {
            // Full: leave the byte in the UART, the reader switches the interrupt back on.
            UART0->CTRL &= ~UART_CTRL_RX_INT;
            return;
        }
        int c = UART0->DATA & 0xff;
        if (c == mp_interrupt_char) {
            // Ctrl-C while code runs (or the character set by micropython.kbd_intr): raise
            // KeyboardInterrupt in the running code instead of queueing the byte.
            mp_sched_keyboard_interrupt();
            continue;
        }
        rx_ring[rx_head % RX_RING_SIZE] = (uint8_t)c;
        rx_head = rx_head + 1;
    }
}

static int ring_get(void) {
    if (rx_head == rx_tail) {
        return -1;
    }
    int c = rx_ring[rx_tail % RX_RING_SIZE];
    rx_tail = rx_tail + 1;
    if (!(UART0->CTRL & UART_CTRL_RX_INT)) {
        // Room again. The UART raises its interrupt only when a byte arrives, and the one
        // waiting in it already has: run the handler by hand to take it.
        UART0->CTRL |= UART_CTRL_RX_INT;
        NVIC_ISPR0 = 1u << UART0_RX_IRQ;
    }
    return c;
}

// Replaces the port's uart_rx_chr (linker --wrap): the port's mp_hal_stdin_rx_chr calls it in
// a loop, so an empty buffer sleeps the CPU until the next interrupt instead of spinning.
int __wrap_uart_rx_chr(void) {
    int c = ring_get();
    if (c >= 0) {
        return c;
    }
    // A byte that arrives between the check above and WFI is picked up at the next tick, at
    // most 10 ms later (a window of a few instructions: rare). Masking interrupts around WFI
    // would close that gap on hardware, but QEMU 7.2 does not wake a Cortex-M from WFI for an
    // interrupt masked by PRIMASK: the board hung so.
    wait_for_interrupt();
    // A Ctrl-C that came in while code waits for input (input(), stdin.read) ends the wait.
    // The REPL itself never has one pending: pyexec clears it when code ends.
    mp_handle_pending(true);
    return ring_get();
}

uintptr_t __wrap_mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && rx_head != rx_tail) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}

// Milliseconds and the cycles into the current millisecond, read consistently.
static void ticks_now(uint32_t *ms, uint32_t *cycles) {
    static uint32_t last_ms, last_cycles;
    uint32_t m1, m2, val;
    do {
        m1 = tick_base_ms;
        val = SYST_CVR;
        m2 = tick_base_ms;
    } while (m1 != m2);
    uint32_t into = (TICK_MS * CYCLES_PER_MS - 1) - val; // cycles since the last interrupt
    uint32_t now_ms = m1 + into / CYCLES_PER_MS;
    uint32_t now_cycles = into % CYCLES_PER_MS;
    // QEMU can show the counter already reloaded before the tick's interrupt has run (its
    // timer fires on another host thread): that reading is 10 ms behind. Time never goes back.
    if ((int32_t)(now_ms - last_ms) < 0 || (now_ms == last_ms && now_cycles < last_cycles)) {
        now_ms = last_ms;
        now_cycles = last_cycles;
    }
    last_ms = now_ms;
    last_cycles = now_cycles;
    *ms = now_ms;
    *cycles = now_cycles;
}

mp_uint_t mp_hal_ticks_ms(void) {
    uint32_t ms, cycles;
    ticks_now(&ms, &cycles);
    return ms;
}

mp_uint_t mp_hal_ticks_us(void) {
    uint32_t ms, cycles;
    ticks_now(&ms, &cycles);
    return ms * 1000u + cycles / (CYCLES_PER_MS / 1000u);
}

mp_uint_t mp_hal_ticks_cpu(void) {
    uint32_t ms, cycles;
    ticks_now(&ms, &cycles);
    return ms * CYCLES_PER_MS + cycles;
}

uint64_t mp_hal_time_ns(void) {
    uint32_t ms, cycles;
    ticks_now(&ms, &cycles);
    return boot_time_ns + (uint64_t)ms * 1000000u + (uint64_t)cycles * 40u;
}

void mp_hal_delay_ms(mp_uint_t ms) {
    uint32_t start = mp_hal_ticks_ms();
    for (;;) {
        // Ctrl-C and scheduled callbacks are handled while sleeping, like a real port.
        mp_handle_pending(true);
        uint32_t passed = mp_hal_ticks_ms() - start;
        if (passed >= ms) {
            return;
        }
        if (ms - passed > TICK_MS) {
            wait_for_interrupt(); // the next tick (or a byte) is no later than due
        }
        // else: the last few milliseconds by the clock, so sleep_ms(1) is 1 ms, not 10
    }
}

void mp_hal_delay_us(mp_uint_t us) {
    uint32_t start = mp_hal_ticks_us();
    while (mp_hal_ticks_us() - start < us) {
    }
}

uint32_t mpk_random_seed(void) {
    uint64_t ns = mp_hal_time_ns();
    return (uint32_t)ns ^ (uint32_t)(ns >> 32);
}

void mpk_idle(void) {
    wait_for_interrupt();
}

void mpk_system_reset(void) {
    // SYSRESETREQ: QEMU resets the whole machine and reloads the firmware, RAM is not wiped.
    SCB_AIRCR = (0x05fau << 16) | (1u << 2);
    for (;;) {
        wait_for_interrupt();
    }
}

int mpk_reset_cause(void) {
    return 0; // not tracked: the port defines no reset-cause constants
}

// ARM semihosting SYS_TIME: seconds since the epoch on the host (QEMU runs with -semihosting;
// the port already needs it to start).
static uint32_t semihosting_time(void) {
    register uint32_t r0 __asm__ ("r0") = 0x11;
    register uint32_t r1 __asm__ ("r1") = 0;
    __asm__ __volatile__ ("bkpt 0xab" : "+r" (r0) : "r" (r1) : "memory");
    return r0;
}

// time.time(): the host's seconds, asked at each call (see board_time.h).
uint32_t mpk_host_time(void) {
    return semihosting_time();
}

static void hardware_init(void) {
    const uint32_t *rom = (const uint32_t *)SCB_VTOR;
    for (int i = 0; i < 16; ++i) {
        vectors[i] = rom[i];
    }
    for (int i = 16; i < N_VECTORS; ++i) {
        vectors[i] = rom[3]; // HardFault's handler reports anything unexpected
    }
    vectors[EXC_SYSTICK] = (uint32_t)systick_handler;
    vectors[16 + UART0_RX_IRQ] = (uint32_t)uart0_rx_handler;
    SCB_VTOR = (uint32_t)vectors;

    boot_time_ns = (uint64_t)semihosting_time() * 1000000000ull;
    SYST_RVR = TICK_MS * CYCLES_PER_MS - 1;
    SYST_CVR = 0;
    SYST_CSR = 7; // processor clock, interrupt, enable

    UART0->INTSTATUS = UART_INT_RX;
    UART0->CTRL |= UART_CTRL_RX_INT;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    // A byte that came in during boot, before the interrupt was on, would otherwise sit in the
    // UART forever (it raises the interrupt only on arrival), and block everything behind it.
    NVIC_ISPR0 = 1u << UART0_RX_IRQ;
}

void mpk_board_init(void) {
    static bool started; // .bss: false again after a system reset, kept over a soft reset
    if (!started) {
        started = true;
        hardware_init();
    }
    // _boot.py mounts littlefs (formatting it the first time), then the user's boot.py and,
    // as on the rp2 and ESP32 ports, main.py unless boot.py raised (Ctrl-C at boot included)
    // or this is a soft reset from the raw REPL.
    pyexec_frozen_module("_boot.py", false);
    int ret = pyexec_file_if_exists("boot.py");
    if (ret != 0 && pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL) {
        pyexec_file_if_exists("main.py");
    }
}
