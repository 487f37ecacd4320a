/**
 * Copies a query answer (pcap or pcapng) from the server to its destination record by record, so the
 * client can apply its own packet and byte limits exactly and know whether they cut the answer: it
 * asks the server for one packet (and one largest record) more than it will pass on, and the extra
 * record, when it comes, proves that more packets match.
 */
import { MAX_CAPLEN, RECORD_HEADER_SIZE, sniffMagic } from "../pcap/format.ts";
import { PCAPNG_SHB, pcapngLittleEndian } from "../pcap/pcapng.ts";

/** Room for one more record than the byte limit: a record header and the largest capture. */
export const ONE_RECORD_MORE = RECORD_HEADER_SIZE + MAX_CAPLEN + 32;

/** Limits the client applies itself. */
export interface CopyLimits {
  /** Most packets to pass on (Infinity = all). */
  packets: number;
  /** Most answer bytes to pass on, file header included (Infinity = all). */
  bytes: number;
}

/** What was passed on. */
export interface CopyResult {
  packets: number;
  bytes: number;
  /** A limit stopped the copy and at least one more packet matched: which one. */
  cutBy: "packets" | "bytes" | null;
  /** The reader went away (EPIPE: `| head`, `| tcpdump -c N`); not an error. */
  closedEarly: boolean;
}

/** Splits an answer byte stream into units: the file header, then one record (or pcapng block) each. */
class UnitSplitter {
  #buffer: Uint8Array = new Uint8Array(0);
  #format: "pcap" | "pcapng" | null = null;
  #littleEndian = true;

  push(chunk: Uint8Array): void {
    if (this.#buffer.length === 0) this.#buffer = chunk;
    else {
      const joined = new Uint8Array(this.#buffer.length + chunk.length);
      joined.set(this.#buffer);
      joined.set(chunk, this.#buffer.length);
      this.#buffer = joined;
    }
  }

  /** Leftover bytes that do not form a whole unit. */
  get rest(): Uint8Array {
    return this.#buffer;
  }

  /** The next whole unit, and whether it is a packet; null until more bytes arrive. */
  next(): { bytes: Uint8Array; packet: boolean } | null {
    const b = this.#buffer;
    if (this.#format === null) {
      if (b.length < 12) return null;
      const magic = new DataView(b.buffer, b.byteOffset, 12).getUint32(0, true);
      this.#format = magic === PCAPNG_SHB ? "pcapng" : "pcap";
      if (this.#format === "pcap") {
        this.#littleEndian = sniffMagic(magic)?.littleEndian ?? false;
        return this.#take(24, false);
      }
    }
    if (this.#format === "pcap") {
      if (b.length < 16) return null;
      const caplen = new DataView(b.buffer, b.byteOffset, 16).getUint32(8, this.#littleEndian);
      return this.#take(16 + caplen, true);
    }
    if (b.length < 12) return null;
    const view = new DataView(b.buffer, b.byteOffset, 12);
    const type = view.getUint32(0, this.#littleEndian);
    if (type === PCAPNG_SHB) this.#littleEndian = pcapngLittleEndian(view);
    const length = view.getUint32(4, this.#littleEndian);
    // Enhanced (6), simple (3) and obsolete (2) packet blocks carry packets.
    return this.#take(length, type === 6 || type === 3 || type === 2);
  }

  #take(length: number, packet: boolean): { bytes: Uint8Array; packet: boolean } | null {
    if (length < 12 || this.#buffer.length < length) return null;
    const bytes = this.#buffer.subarray(0, length);
    this.#buffer = this.#buffer.subarray(length);
    return { bytes, packet };
  }
}

/** Copies `body` to `sink` within `limits`. */
export async function copyAnswer(
  body: ReadableStream<Uint8Array>,
  sink: WritableStream<Uint8Array>,
  limits: CopyLimits & { closeSink: boolean },
): Promise<CopyResult> {
  const result: CopyResult = { packets: 0, bytes: 0, cutBy: null, closedEarly: false };
  const writer = sink.getWriter();
  const reader = body.getReader();
  const splitter = new UnitSplitter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      splitter.push(value);
      const out: Uint8Array[] = [];
      for (let unit = splitter.next(); unit !== null; unit = splitter.next()) {
        if (unit.packet && result.packets >= limits.packets) result.cutBy = "packets";
        else if (result.bytes + unit.bytes.length > limits.bytes) result.cutBy = "bytes";
        if (result.cutBy !== null) break;
        out.push(unit.bytes);
        result.bytes += unit.bytes.length;
        if (unit.packet) result.packets++;
      }
      if (out.length > 0) await writer.write(concat(out));
      if (result.cutBy !== null) break;
    }
    if (result.cutBy === null && splitter.rest.length > 0) {
      // A torn last unit (the server failed mid-answer): pass it on as it came.
      await writer.write(splitter.rest);
      result.bytes += splitter.rest.length;
    }
    if (limits.closeSink) await writer.close();
    else await writer.ready;
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
    result.closedEarly = true;
  } finally {
    writer.releaseLock();
    await reader.cancel().catch(() => {});
  }
  return result;
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let length = 0;
  for (const p of parts) length += p.length;
  const all = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}
