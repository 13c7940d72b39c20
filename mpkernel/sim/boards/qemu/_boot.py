# Runs at every start, before boot.py: mount the filesystem at "/", formatting it the first
# time. Its blocks live in the board's PSRAM (0x21000000), which QEMU maps onto a host file,
# so files survive a reset and a restart of QEMU with the same file.


def _mount():
    import uctypes
    import vfs

    class PSRAMBlocks:
        BLOCK = 4096
        COUNT = 512  # 2 MiB, the size of a typical ESP32's filesystem

        def __init__(self):
            self.mem = memoryview(uctypes.bytearray_at(0x21000000, self.BLOCK * self.COUNT))

        def readblocks(self, n, buf, off=0):
            a = n * self.BLOCK + off
            buf[:] = self.mem[a : a + len(buf)]

        def writeblocks(self, n, buf, off=0):
            a = n * self.BLOCK + off
            self.mem[a : a + len(buf)] = buf

        def ioctl(self, op, arg):
            if op == 4:  # block count
                return self.COUNT
            if op == 5:  # block size
                return self.BLOCK
            if op == 6:  # erase: memory needs none
                return 0
            return 0  # init, deinit, sync: nothing to do

    bdev = PSRAMBlocks()
    # 256-byte reads and programs, as the rp2 port's flash uses: with littlefs's default of 32,
    # each write goes through the block device (Python here) ten times as often, and writing
    # 200 KB took 2.3 s instead of 0.13 s.
    geometry = {"readsize": 256, "progsize": 256, "lookahead": 256}
    try:
        fs = vfs.VfsLfs2(bdev, **geometry)
    except OSError:
        vfs.VfsLfs2.mkfs(bdev, **geometry)
        fs = vfs.VfsLfs2(bdev, **geometry)
    vfs.mount(fs, "/")


_mount()
del _mount
