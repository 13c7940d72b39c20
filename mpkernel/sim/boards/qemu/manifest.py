# Frozen into the firmware: start-up code that mounts the filesystem.
freeze("$(BOARD_DIR)", "_boot.py")  # noqa: F821 (manifest files get freeze() from the build)
