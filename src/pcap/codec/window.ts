/** A growable window over a file read in order, for the codecs' scans of foreign files (unit_source.ts). */

/** Sequential reader over a file with a growable window. */
export class FileWindow {
  buf = new Uint8Array(0);
  /** File offset of buf[0]. */
  start = 0;
  len = 0;
  readonly size: number;
  readonly #f: Deno.FsFile;

  constructor(f: Deno.FsFile, size: number) {
    this.#f = f;
    this.size = size;
  }

  /** Makes file bytes [pos, pos + n) available (fewer at end of file); returns how many are. */
  ensure(pos: number, n: number): number {
    const want = Math.min(n, this.size - pos);
    if (pos >= this.start && pos + want <= this.start + this.len) return want;
    // Keep what is still needed, read the rest.
    const keepFrom = pos - this.start;
    const cap = Math.max(want, 8 * 1024 * 1024);
    const nb = this.buf.length >= cap ? this.buf : new Uint8Array(cap);
    let kept = 0;
    if (keepFrom >= 0 && keepFrom < this.len) {
      kept = this.len - keepFrom;
      if (nb === this.buf) nb.copyWithin(0, keepFrom, this.len);
      else nb.set(this.buf.subarray(keepFrom, this.len));
    }
    this.buf = nb;
    this.start = pos;
    this.len = kept;
    this.#f.seekSync(pos + kept, Deno.SeekMode.Start);
    const fill = Math.min(nb.length, this.size - pos);
    while (this.len < fill) {
      const got = this.#f.readSync(nb.subarray(this.len, fill));
      if (got === null || got === 0) break;
      this.len += got;
    }
    return Math.min(want, this.len);
  }

  /** The bytes [pos, pos + n), which `ensure` made available. */
  view(pos: number, n: number): Uint8Array {
    return this.buf.subarray(pos - this.start, pos - this.start + n);
  }

  /** Whether the file is all zero bytes from `pos` on (padding that gzip and zstd tools ignore). */
  allZero(pos: number): boolean {
    for (let at = pos; at < this.size;) {
      const n = this.ensure(at, 65536);
      const v = this.view(at, n);
      for (let i = 0; i < v.length; i++) if (v[i] !== 0) return false;
      at += n;
    }
    return true;
  }
}
