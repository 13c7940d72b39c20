# mpkernel's emulated modern board: MicroPython's qemu port on QEMU's mps2-an385 (Cortex-M3),
# with what a real board has and the stock port lacks (see README.md in this folder).
# Build from ports/qemu with BOARD_DIR pointing here; mpkernel/sim/build.py does that.

QEMU_ARCH = arm
QEMU_MACHINE = mps2-an385

CFLAGS += -mthumb -mcpu=cortex-m3 -mfloat-abi=soft
CFLAGS += -DQEMU_SOC_MPS2
CFLAGS += -DMICROPY_HW_MCU_NAME='"Cortex-M3"'

# This folder first, so that its mpconfigport.h (which includes the port's own and changes a
# few options) is the one py/mpconfig.h finds.
INC += -I$(BOARD_DIR)

# Our own copy of the port's linker script: it keeps .ARM.exidx, which libgcc's 64-bit
# division (used by littlefs) brings along and the stock script has no place for.
LDSCRIPT = $(BOARD_DIR)/mps2.ld

SRC_BOARD_O = shared/runtime/gchelper_native.o shared/runtime/gchelper_thumb2.o

# Board code lives outside the port folder; the port builds SRC_C relative to itself, so it
# goes in by its absolute path (BOARD_DIR must be absolute).
SRC_C += $(BOARD_DIR)/board.c

# The UART input goes through our interrupt-fed ring buffer instead of polling the register,
# and stdin polling reports that buffer (the port's version says "nothing, ever").
LDFLAGS += -Wl,--wrap=uart_rx_chr -Wl,--wrap=mp_hal_stdio_poll

MICROPY_VFS_LFS2 = 1
FROZEN_MANIFEST = $(BOARD_DIR)/manifest.py

MPY_CROSS_FLAGS += -march=armv7m
