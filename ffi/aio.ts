/**
 * One asynchronous write at a time through POSIX AIO (glibc's: a small pool of threads that run
 * pwrite). A capture worker never returns to its event loop, so a Promise-based write would never
 * complete; with AIO it starts a block's write, fills the next block meanwhile and collects the
 * result with plain synchronous calls, while the kernel's copy into the page cache runs on
 * another core. No isolate is started (a helper Worker would cost ~13 MB). (Reading the input
 * ahead the same way was tried: on two cores it made replays slower, see bench/RESULTS.md.)
 *
 * Layout of glibc's `struct aiocb` on x86_64 (/usr/include/aio.h): aio_fildes i32 @0, aio_buf
 * pointer @16, aio_nbytes u64 @24, aio_sigevent @32 (sigev_notify i32 @44), aio_offset i64 @128;
 * 168 bytes in all.
 *
 * @module
 */
import { errno, type Libc, libcOrNull, strerror } from "./libc.ts";

const AIOCB_BYTES = 168;
const AT_FILDES = 0;
const AT_BUF = 16;
const AT_NBYTES = 24;
const AT_SIGEV_NOTIFY = 44;
const AT_OFFSET = 128;
const SIGEV_NONE = 1;
const EINPROGRESS = 115;
const EINTR = 4;
const EAGAIN = 11;

type Aio = Libc & {
  aio_write: NonNullable<Libc["aio_write"]>;
  aio_error: NonNullable<Libc["aio_error"]>;
  aio_return: NonNullable<Libc["aio_return"]>;
  aio_suspend: NonNullable<Libc["aio_suspend"]>;
};

/** Whether this libc has the AIO calls (glibc before 2.34 keeps them in librt). */
function hasAio(lib: Libc): lib is Aio {
  return lib.aio_write !== null && lib.aio_error !== null && lib.aio_return !== null &&
    lib.aio_suspend !== null;
}

/** An error as Deno words it: "No space left on device (os error 28)". */
function osError(code: number): Error {
  return new Error(`${strerror(code)} (os error ${code})`);
}

/** One write in flight at a time, on any descriptor; see the module comment. */
export class AsyncWrite {
  readonly #lib: Aio;
  readonly #cb = new Uint8Array(AIOCB_BYTES);
  readonly #cbView = new DataView(this.#cb.buffer);
  /** aio_suspend's list: one pointer, to #cb. */
  readonly #list = new BigUint64Array(1);
  #busy = false;

  private constructor(lib: Aio) {
    this.#lib = lib;
    this.#list[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#cb)));
  }

  /** A writer, or null where AIO cannot be used (no FFI permission, not x86_64 glibc Linux). */
  static create(): AsyncWrite | null {
    // The aiocb layout above is x86_64 glibc's.
    if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return null;
    const lib = libcOrNull();
    return lib !== null && hasAio(lib) ? new AsyncWrite(lib) : null;
  }

  /** True from a start until finish(). */
  get busy(): boolean {
    return this.#busy;
  }

  /**
   * Starts writing `length` bytes of `buf` at file offset `offset` of descriptor `fd`. `buf` must
   * stay untouched until finish(). Throws when the write cannot be queued (nothing was written).
   */
  startWrite(fd: number, buf: Uint8Array, length: number, offset: number): void {
    if (this.#busy) throw new Error("An asynchronous write is already in flight");
    if (length > buf.length) {
      throw new Error(`Invalid write of ${length} bytes: expected at most ${buf.length}`);
    }
    this.#cb.fill(0);
    const v = this.#cbView;
    v.setInt32(AT_FILDES, fd, true);
    // The pointer of a view is that of its first byte (byteOffset included).
    v.setBigUint64(AT_BUF, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))), true);
    v.setBigUint64(AT_NBYTES, BigInt(length), true);
    v.setInt32(AT_SIGEV_NOTIFY, SIGEV_NONE, true);
    v.setBigInt64(AT_OFFSET, BigInt(offset), true);
    if (this.#lib.aio_write(this.#cb) !== 0) throw this.#lastError();
    this.#busy = true;
  }

  /** Waits for the write in flight; returns the bytes written (a short count means a full disk
   * or a similar end), or throws the write's error. */
  finish(): number {
    if (!this.#busy) throw new Error("No asynchronous write in flight");
    const lib = this.#lib;
    let status = lib.aio_error(this.#cb);
    while (status === EINPROGRESS) {
      if (lib.aio_suspend(this.#list, 1, null) !== 0) {
        const code = errno(lib);
        if (code !== EINTR && code !== EAGAIN) throw osError(code);
      }
      status = lib.aio_error(this.#cb);
    }
    this.#busy = false;
    const result = Number(lib.aio_return(this.#cb));
    if (status !== 0) throw osError(status);
    return result;
  }

  #lastError(): Error {
    return osError(errno(this.#lib));
  }
}

/**
 * The descriptor of the open file at `path` in this process, -1 when not found. The path must
 * be open exactly once (a new temporary file is).
 */
export function findDescriptor(path: string): number {
  try {
    const real = Deno.realPathSync(path);
    for (const entry of Deno.readDirSync("/proc/self/fd")) {
      try {
        if (Deno.readLinkSync(`/proc/self/fd/${entry.name}`) === real) return Number(entry.name);
      } catch {
        // Closed since the listing.
      }
    }
  } catch {
    // No /proc, or no read permission: no hints.
  }
  return -1;
}
