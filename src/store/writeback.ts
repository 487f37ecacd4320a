/**
 * Early writeback of output files: after each block is written, ask the kernel to start writing
 * it to disk (sync_file_range with SYNC_FILE_RANGE_WRITE, which does not wait for the I/O), and
 * every BACKGROUND_SYNC_BYTES run an fdatasync on another thread (a nonblocking FFI call: Deno
 * runs it on its blocking-call pool while the worker goes on capturing).
 *
 * Why: a file is fsynced before it is renamed into view. Without a hint the kernel keeps the
 * whole file dirty in the page cache (background writeback starts only at 10% of memory or after
 * 30 s), so that fsync writes all of it at once and the worker stalls for it: 0.6 s for a 360 MB
 * file here, far longer for a large rotation size on a slow disk. Started block by block, the
 * I/O overlaps with capturing and the final fsync only waits for the last blocks.
 *
 * The fdatasync matters on virtual disks: there, the final flush also makes the host write the
 * file's data out, which sync_file_range alone does not start (measured here: a 360 MB file's
 * fsync after sync_file_range hints took 330 ms, with background fdatasyncs every 32 MiB 20 ms).
 * The final fsync before the rename stays as it was; these calls only get its work done early.
 *
 * It is only a hint: when libc or the file's descriptor cannot be found, nothing happens.
 * Deno does not expose a file's descriptor, so it is looked up once per file in /proc/self/fd.
 *
 * @module
 */

import { findDescriptor } from "../../ffi/aio.ts";
import { fdatasyncInBackground, startWriteback, writebackAvailable } from "../../ffi/libc.ts";

/** Bytes written between two background fdatasync calls. */
const BACKGROUND_SYNC_BYTES = 32 << 20;

/** Starts writeback of byte ranges of one open file; see the module comment. */
export class Writeback {
  readonly #fd: number;
  #unsynced = 0;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** The file's descriptor in this process. */
  get fd(): number {
    return this.#fd;
  }

  /** A writeback starter for the file just opened at `path`, or null when hints are unavailable. */
  static forFile(path: string): Writeback | null {
    if (!writebackAvailable()) return null;
    const fd = findDescriptor(path);
    return fd < 0 ? null : new Writeback(fd);
  }

  /**
   * Asks the kernel to start writing `length` bytes from `offset`, and now and then to flush the
   * file in the background (does not wait, never throws). Call only while the file is open.
   */
  start(offset: number, length: number): void {
    startWriteback(this.#fd, offset, length);
    this.#unsynced += length;
    if (this.#unsynced >= BACKGROUND_SYNC_BYTES) {
      this.#unsynced = 0;
      // The final fsync reports errors; this one only gets its work done early.
      fdatasyncInBackground(this.#fd);
    }
  }
}
