"""File magics: %ls %cat %rm %mkdir %df %put %get %sync %%writefile %run.

Everything here goes through `mpkernel.files.api.FileSystem`, which verifies every upload and
download against a checksum the board computes, and replaces the old file only once the new
one is complete.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from mpkernel.display import StreamCleaner, human_bytes
from mpkernel.errors import MpkernelError
from mpkernel.files import codec
from mpkernel.files.api import FileError, FileSystem, PutResult
from mpkernel.magics import MagicContext, arg, magic

# Below this size a transfer is over before a bar would be drawn: a summary line suffices.
PROGRESS_MIN = 2048


def _fs(ctx: MagicContext) -> FileSystem:
    board = ctx.board
    cached = ctx.state.get("fs")
    if cached is None or cached.board is not board:
        cached = FileSystem(board)
        ctx.state["fs"] = cached
    return cached


def _upload(ctx: MagicContext, data: bytes, remote: str, label: str) -> PutResult:
    fs = _fs(ctx)
    bar = ctx.progress(label, len(data)) if len(data) >= PROGRESS_MIN else None
    try:
        result = fs.put(data, remote, progress=(lambda done, total: bar.update(done))
                        if bar is not None else None)
    except MpkernelError as err:
        if bar is not None:
            bar.close(f"{label}: failed.")
        raise err from None
    if bar is not None:
        bar.close(result.summary())
    else:
        ctx.write(result.summary() + "\n")
    return result


@magic(
    "ls",
    arg("path", nargs="?", default="", help="folder on the board (default: the top)"),
    arg("-l", dest="long", action="store_true", help="show dates where the firmware has them"),
    arg("-r", dest="recursive", action="store_true", help="list folders' contents too"),
)
def ls(ctx: MagicContext, args: argparse.Namespace) -> None:
    """List files on the board with their sizes: `%ls`, `%ls lib -l -r`."""
    fs = _fs(ctx)
    entries = fs.ls(args.path, recursive=args.recursive)
    if not entries:
        ctx.write(f"No files{' in ' + args.path if args.path else ''}.\n")
        return
    width = max(len(e.path) for e in entries)
    lines = []
    for e in entries:
        size = "<dir>" if e.is_dir else f"{e.size:>7}"
        when = ""
        if args.long and e.mtime is not None:
            when = "  " + time.strftime("%Y-%m-%d %H:%M", time.gmtime(_epoch(e.mtime)))
        lines.append(f"{e.path + ('/' if e.is_dir else ''):<{width + 1}} {size}{when}")
    total = sum(e.size for e in entries if not e.is_dir)
    files = sum(1 for e in entries if not e.is_dir)
    lines.append(f"{files} file{'s' if files != 1 else ''}, {human_bytes(total)}")
    if args.long and all(e.mtime is None for e in entries):
        lines.append("(this firmware keeps no file dates)")
    ctx.write("\n".join(lines) + "\n")


def _epoch(mtime: int) -> int:
    # MicroPython ports with a 2000 epoch report small numbers; shift them to Unix time.
    return mtime + 946684800 if mtime < 946684800 else mtime


@magic("cat", arg("path", help="file on the board"))
def cat(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Show a file from the board: `%cat main.py`."""
    data = _fs(ctx).get(args.path)
    if b"\x00" in data:
        ctx.write(f"{args.path} is binary ({len(data)} bytes); use %get to copy it here.\n")
        return
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    ctx.write(text if text.endswith("\n") or not text else text + "\n")


@magic(
    "rm",
    arg("path", help="file (or folder with -r) on the board"),
    arg("-r", dest="recursive", action="store_true", help="remove a folder and its contents"),
)
def rm(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Remove a file from the board: `%rm old.py`, `%rm -r lib`."""
    removed = _fs(ctx).rm(args.path, recursive=args.recursive)
    ctx.write(f"Removed {', '.join(removed) if len(removed) < 6 else f'{len(removed)} items'}.\n")


@magic("mkdir", arg("path", help="folder to make on the board"))
def mkdir(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Make a folder on the board: `%mkdir lib` (not on flat filesystems like the micro:bit's)."""
    _fs(ctx).mkdir(args.path)
    ctx.write(f"Made {args.path}/.\n")


@magic("df")
def df(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Show the board's free filesystem space, and how it was obtained: `%df`."""
    result = _fs(ctx).df()
    free = f"{human_bytes(result.free)} ({result.free} bytes)"
    if result.total:
        ctx.write(f"{free} free of {human_bytes(result.total)} "
                  f"({100 * result.free / result.total:.0f}% free), {result.how}.\n")
    else:
        ctx.write(f"{free} free, {result.how}.\n")


@magic(
    "put",
    arg("local", help="file or folder on this computer"),
    arg("remote", nargs="?", default=None, help="name on the board (default: the same name)"),
)
def put(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Copy a file (or a folder's files) to the board, verified: `%put main.py`,
    `%put build/app.py main.py`, `%put lib`."""
    local = Path(args.local).expanduser()
    if not local.exists():
        raise FileError(f"There is no {local} on this computer.",
                        f"The kernel's working folder is {os.getcwd()}.")
    if local.is_dir():
        files = _local_files(local)
        base = args.remote if args.remote is not None else local.name
        _check_folder_fits(ctx, files, base)
        for rel in files:
            _upload(ctx, (local / rel).read_bytes(), _join(base, rel), f"Uploading {rel}")
        ctx.write(f"Copied {len(files)} files from {local}.\n")
        return
    remote = args.remote or local.name
    _upload(ctx, local.read_bytes(), remote, f"Uploading {remote}")


def _join(base: str, rel: str) -> str:
    return f"{base.rstrip('/')}/{rel}" if base else rel


def _local_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
    )


def _check_folder_fits(ctx: MagicContext, files: list[str], base: str) -> None:
    fs = _fs(ctx)
    if fs.info().flat and (base or any("/" in f for f in files)):
        raise FileError(
            "This board's filesystem is flat (no folders), so a folder cannot be copied as "
            "one. Its files are: " + ", ".join(files[:8]) + ("..." if len(files) > 8 else ""),
            "Copy the files themselves (%put FILE), or use %sync FOLDER to put its top-level "
            "files at the board's top level.",
        )


@magic(
    "get",
    arg("remote", help="file on the board"),
    arg("local", nargs="?", default=None, help="where to save it here (default: same name)"),
)
def get(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Copy a file from the board to this computer: `%get log.csv`, `%get data.bin out/`."""
    fs = _fs(ctx)
    size = fs.size(codec.check_path(args.remote, flat=fs.info().flat))
    bar = ctx.progress(f"Downloading {args.remote}", size) if size >= PROGRESS_MIN else None
    try:
        result = fs.fetch(args.remote, progress=(lambda d, t: bar.update(d)) if bar else None,
                          size=size)
    except MpkernelError:
        if bar is not None:
            bar.close(f"Downloading {args.remote}: failed.")
        raise
    local = Path(args.local or Path(args.remote).name).expanduser()
    if local.is_dir():
        local = local / Path(args.remote).name
    # Write beside the target and rename, so a failed write never leaves half a file here.
    temp = local.with_name(local.name + ".part")
    temp.write_bytes(result.data)
    os.replace(temp, local)
    line = result.summary(str(local))
    if bar is not None:
        bar.close(line)
    else:
        ctx.write(line + "\n")


@magic(
    "sync",
    arg("localdir", help="folder on this computer"),
    arg("remotedir", nargs="?", default="", help="folder on the board (default: the top)"),
    arg("--delete", action="store_true", help="also remove board files not in LOCALDIR"),
    arg("--dry-run", action="store_true", help="only say what would change"),
)
def sync(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Upload only what changed (by content hash) from a folder: `%sync src`,
    `%sync src lib --delete` (removes board files that are not in src)."""
    folder = Path(args.localdir).expanduser()
    if not folder.is_dir():
        raise FileError(f"{folder} is not a folder on this computer.")
    fs = _fs(ctx)
    info = fs.info()
    files = _local_files(folder)
    base = args.remotedir.strip("/")
    if info.flat:
        _check_folder_fits(ctx, files, base)
    contents = {rel: (folder / rel).read_bytes() for rel in files}
    local = {rel: codec.digest(data, info.digest) for rel, data in contents.items()}
    remote_names = _remote_files(fs, base)
    remote = fs.digests([_join(base, rel) for rel in sorted(set(local) | remote_names)])
    by_rel = {rel: remote.get(_join(base, rel)) for rel in set(local) | remote_names}
    by_rel = {rel: d for rel, d in by_rel.items() if d is not None or rel in local}
    plan = codec.plan_sync(local, by_rel)
    extras = [rel for rel in plan.delete if by_rel.get(rel) is not None]
    verb = "Would upload" if args.dry_run else "Uploading"
    ctx.write(f"{len(plan.same)} unchanged; {verb.lower()} {len(plan.upload)}"
              + (f"; {len(extras)} on the board only" if extras else "") + ".\n")
    if args.dry_run:
        for rel in plan.upload:
            ctx.write(f"  would upload {rel}\n")
        for rel in extras:
            ctx.write(f"  {'would remove' if args.delete else 'only on the board:'} {rel}\n")
        return
    for rel in plan.upload:
        _upload(ctx, contents[rel], _join(base, rel), f"Uploading {rel}")
    if args.delete:
        for rel in extras:
            fs.rm(_join(base, rel))
            ctx.write(f"Removed {_join(base, rel)} (not in {folder}).\n")
    elif extras:
        ctx.write(f"On the board but not in {folder}: {', '.join(extras)} "
                  "(add --delete to remove them).\n")


def _remote_files(fs: FileSystem, base: str) -> set[str]:
    if fs.info().flat:
        names = {e.path for e in fs.ls()}
    else:
        try:
            entries = fs.ls(base, recursive=True)
        except FileError:
            return set()  # the folder does not exist yet: everything is new
        prefix = base + "/" if base else ""
        names = {e.path[len(prefix):] if e.path.startswith(prefix) else e.path
                 for e in entries if not e.is_dir}
    return {n for n in names if not n.endswith(codec.TEMP_SUFFIX) and n != codec.JOURNAL}


@magic(
    "writefile",
    arg("path", help="file name on the board"),
    arg("--run", action="store_true", help="run it on the board after writing"),
    cell=True,
)
def writefile(ctx: MagicContext, args: argparse.Namespace, body: str) -> None:
    """Write the cell's text to a file on the board (not on this computer):
    `%%writefile main.py`, or `%%writefile blink.py --run` to run it right after.

    To write a file on this computer instead, use `%%host` with IPython's own `%%writefile`.
    """
    data = body.encode()
    _upload(ctx, data, args.path, f"Writing {args.path}")
    if args.run:
        _run_on_board(ctx, f"exec(open({args.path!r}).read(),{{'__name__':'__main__'}})")


@magic("run", arg("file", help="a .py file on this computer"))
def run(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Run a Python file from this computer on the board with live output, leaving no copy
    there: `%run experiment.py`."""
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise FileError(f"There is no file {path} on this computer.",
                        f"The kernel's working folder is {os.getcwd()}.")
    code = path.read_text()
    board = ctx.board
    board.ensure_ready()
    if board.caps.raw_paste or len(code.encode()) <= board.caps.max_plain_cell():
        _run_on_board(ctx, code)
        return
    # Too big to send as one program without raw-paste: stage it as a temporary file (cleaned
    # up even after an interrupt, and by the next file command if the board resets).
    temp = "run" + codec.TEMP_SUFFIX
    fs = _fs(ctx)
    fs.put(code.encode(), temp, scratch=True)
    try:
        _run_on_board(ctx, f"exec(open({temp!r}).read(),{{'__name__':'__main__'}})")
    finally:
        fs.rm_quiet(temp)


def _run_on_board(ctx: MagicContext, code: str) -> None:
    cleaner = StreamCleaner()
    try:
        ctx.board.exec(code, on_output=lambda text: ctx.write(cleaner.feed(text)))
    finally:
        tail = cleaner.flush()
        if tail:
            ctx.write(tail)
