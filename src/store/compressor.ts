/**
 * Block compression on a helper thread, so that a capture worker goes on capturing while the
 * previous block is compressed (gzip or zstd; with one worker per interface on a 2-core machine,
 * the second core was idle while the capture thread compressed).
 *
 * The worker's packet loop never returns to its event loop, so hand-over and completion go
 * through shared memory with Atomics: two raw block slots (one filling, one being compressed)
 * and one output buffer, in SharedArrayBuffers. A compressor is passed explicitly to the output
 * (RotatingOutput's `compressor`), which uses it for every file it writes, one after the other;
 * whoever created it closes it when the output is closed, which also ends the helper thread.
 *
 * Where the helper thread comes from: a worker started from a worker takes about a second to
 * start with Deno 2.9 (one started from the main thread, ~30 ms), and blocks are compressed
 * in-line meanwhile. So the main thread starts it (`BlockCompressor.startHelper`) and passes its
 * `setup` to the capture worker, which makes its compressor with `BlockCompressor.attach`; without
 * that, the worker starts one itself (`BlockCompressor.start`).
 *
 * A helper that fails (an uncaught error in its thread) is marked failed in the control block by
 * the thread that started it; the owner then compresses in-line, the block in flight included,
 * rather than waiting for an answer that never comes. Only a starter whose event loop runs (the
 * main thread, not a capture worker in its packet loop) hears of the error in time.
 *
 * @module
 */
import { compressBlock, type Compression } from "../pcap/block_format.ts";
import { type CompressorSetup, Ctl, ERROR_BYTES } from "./compressor_protocol.ts";
import { codec, compressionFromCode } from "../pcap/codecs.ts";

export type { CompressorSetup } from "./compressor_protocol.ts";

/** Slot size of `startHelper` by default: the writer's default block size (1 MiB). */
const DEFAULT_SLOT_SIZE = 1 << 20;

/** How long the helper thread may take to start before it is given up. */
const START_TIMEOUT_MS = 30_000;

/** Value of Ctl.Ready once the helper's thread failed (set by the thread that started it). */
const FAILED = -1;

/** A helper thread compressing one block at a time; see the module comment. */
export class BlockCompressor {
  /** Bytes of each raw slot. */
  readonly slotSize: number;
  readonly #ctl: Int32Array;
  readonly #raw: SharedArrayBuffer;
  readonly #out: Uint8Array;
  readonly #error: Uint8Array;
  /** The helper when this isolate started it, null when attached. */
  readonly #worker: Worker | null;
  #request = 0;
  #ready = false;
  readonly #created = performance.now();
  #closed = false;

  private constructor(setup: CompressorSetup, worker: Worker | null) {
    this.slotSize = setup.slotSize;
    this.#raw = setup.raw;
    this.#ctl = new Int32Array(setup.control);
    this.#out = new Uint8Array(setup.output);
    this.#error = new Uint8Array(setup.error);
    this.#worker = worker;
  }

  /**
   * Starts a helper thread with its shared buffers (call from the main thread: see the module
   * comment). Pass `setup` to the capture worker; keep the worker object to terminate it once the
   * capture worker is gone (closing the worker's attached compressor stops the helper, but a
   * crashed capture worker never does). `onError` hears of an error in the helper's thread, which is then marked
   * failed (its user compresses in-line) instead of taking the starting thread down.
   */
  static startHelper(
    slotSize: number = DEFAULT_SLOT_SIZE,
    options: { onError?: (message: string) => void } = {},
  ): { setup: CompressorSetup; worker: Worker } {
    const setup: CompressorSetup = {
      control: new SharedArrayBuffer(Ctl.Slots * 4),
      raw: new SharedArrayBuffer(slotSize * 2),
      // zstd's bound (size + size/256 + a little) also covers gzip's stored-block overhead.
      output: new SharedArrayBuffer(slotSize + (slotSize >> 7) + 4096),
      error: new SharedArrayBuffer(ERROR_BYTES),
      slotSize,
    };
    const worker = new Worker(new URL("./compress_worker.ts", import.meta.url), {
      type: "module",
    });
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      worker.terminate();
      const ctl = new Int32Array(setup.control);
      Atomics.store(ctl, Ctl.Ready, FAILED);
      // Wakes an owner waiting for a block (wait() re-checks Ready).
      Atomics.notify(ctl, Ctl.Done);
      options.onError?.(event.message);
    };
    worker.postMessage(setup);
    return { setup, worker };
  }

  /** A compressor using the helper thread started elsewhere (`startHelper`); see the module comment. */
  static attach(setup: CompressorSetup): BlockCompressor {
    return new BlockCompressor(setup, null);
  }

  /**
   * A compressor with its own helper thread, started from this thread (ended by `close`); null
   * when no helper thread can be started here (then blocks are compressed in-line).
   */
  static start(slotSize: number = DEFAULT_SLOT_SIZE): BlockCompressor | null {
    try {
      const started = BlockCompressor.startHelper(slotSize);
      return new BlockCompressor(started.setup, started.worker);
    } catch {
      return null;
    }
  }

  /** Raw slot `i` (0 or 1) to fill with a block. */
  slot(i: number): Uint8Array {
    return new Uint8Array(this.#raw, i * this.slotSize, this.slotSize);
  }

  /**
   * Whether the helper thread runs. It takes a while to start (about 1 s for a worker started
   * from a worker, with Deno 2.9), and the caller compresses in-line until it does; a helper
   * that has not started after 30 s, or that failed, is given up.
   */
  ready(): boolean {
    if (this.#closed) return false;
    const state = Atomics.load(this.#ctl, Ctl.Ready);
    if (state === FAILED) {
      this.close();
      return false;
    }
    if (this.#ready) return true;
    this.#ready = state === 1;
    if (!this.#ready && performance.now() - this.#created > START_TIMEOUT_MS) this.close();
    return this.#ready;
  }

  /** Hands over `length` bytes of slot `slot` to compress; at most one block at a time. */
  submit(slot: number, length: number, compress: Compression, level: number): void {
    const ctl = this.#ctl;
    ctl[Ctl.Slot] = slot;
    ctl[Ctl.Length] = length;
    ctl[Ctl.Kind] = codec(compress).indexCode;
    ctl[Ctl.Level] = level;
    this.#request++;
    Atomics.store(ctl, Ctl.Request, this.#request);
    Atomics.notify(ctl, Ctl.Request);
  }

  /**
   * Waits for the block handed over last and returns its compressed bytes (a view of the shared
   * output, valid until the next submit). Throws with the helper's message when compressing
   * failed; compresses the block in-line when the helper's thread failed.
   */
  wait(): Uint8Array {
    const ctl = this.#ctl;
    for (;;) {
      const done = Atomics.load(ctl, Ctl.Done);
      if (done === this.#request) break;
      if (Atomics.load(ctl, Ctl.Ready) === FAILED) return this.#compressInLine();
      Atomics.wait(ctl, Ctl.Done, done, 1000);
    }
    const n = ctl[Ctl.Result];
    if (n < 0) {
      throw new Error(new TextDecoder().decode(this.#error.slice(0, ctl[Ctl.ErrorLength])));
    }
    return this.#out.subarray(0, n);
  }

  /** Compresses the block handed over last here, its helper being gone; closes this compressor. */
  #compressInLine(): Uint8Array {
    const ctl = this.#ctl;
    const block = new Uint8Array(this.#raw, ctl[Ctl.Slot] * this.slotSize, ctl[Ctl.Length]);
    const out = compressBlock(block, compressionFromCode(ctl[Ctl.Kind]), ctl[Ctl.Level]);
    this.close();
    return out;
  }

  /** Stops the helper thread. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#ctl, Ctl.Stop, 1);
    Atomics.store(this.#ctl, Ctl.Request, this.#request + 1);
    Atomics.notify(this.#ctl, Ctl.Request);
    this.#worker?.terminate();
  }
}
