// Included by extmod/modtime.c (MICROPY_PY_TIME_INCLUDEFILE): time.time() for this board.
// Seconds come from the host's clock through semihosting at every call. The 10 ms SysTick
// that drives ticks_ms() can fall behind when the host is busy (QEMU delivers late timer
// interrupts as one), and a clock built on it drifted 3 s from the host's in one test run.

uint32_t mpk_host_time(void);

static mp_obj_t mp_time_time_get(void) {
    return mp_obj_new_int_from_uint(mpk_host_time());
}
