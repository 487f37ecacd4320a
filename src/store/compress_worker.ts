/**
 * The helper thread of BlockCompressor (compressor.ts): waits on the shared control block for a
 * block, compresses it (compressBlock: gzip member or zstd frame) into the shared output buffer
 * and signals completion. Everything travels through shared memory, so the capture worker, which
 * never returns to its event loop while capturing, can hand over and collect blocks.
 */
/// <reference lib="deno.worker" />
import { compressBlock } from "../pcap/block_format.ts";
import { type CompressorSetup, Ctl, ERROR_BYTES } from "./compressor_protocol.ts";
import { compressionFromCode } from "../pcap/codecs.ts";

self.onmessage = (event: MessageEvent<CompressorSetup>) => {
  self.onmessage = null;
  serve(event.data);
  self.close();
};

function serve(setup: CompressorSetup): void {
  const ctl = new Int32Array(setup.control);
  const out = new Uint8Array(setup.output);
  const error = new Uint8Array(setup.error);
  const encoder = new TextEncoder();
  Atomics.store(ctl, Ctl.Ready, 1);
  Atomics.notify(ctl, Ctl.Ready);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, Ctl.Request, seen);
    if (Atomics.load(ctl, Ctl.Stop) !== 0) return;
    const request = Atomics.load(ctl, Ctl.Request);
    if (request === seen) continue;
    seen = request;
    const input = new Uint8Array(
      setup.raw,
      ctl[Ctl.Slot] * setup.slotSize,
      ctl[Ctl.Length],
    );
    try {
      const block = compressBlock(input, compressionFromCode(ctl[Ctl.Kind]), ctl[Ctl.Level]);
      if (block.length > out.length) {
        throw new Error(
          `Compressed block of ${block.length} bytes: expected at most ${out.length}`,
        );
      }
      out.set(block);
      ctl[Ctl.Result] = block.length;
    } catch (err) {
      const text = encoder.encode(err instanceof Error ? err.message : String(err));
      const n = Math.min(text.length, ERROR_BYTES);
      error.set(text.subarray(0, n));
      ctl[Ctl.ErrorLength] = n;
      ctl[Ctl.Result] = -1;
    }
    Atomics.store(ctl, Ctl.Done, seen);
    Atomics.notify(ctl, Ctl.Done);
  }
}
