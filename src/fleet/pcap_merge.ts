/**
 * Merging sensors' pcap answers (HTTP bodies) by packet time into one pcap, as they arrive. Each
 * source is read record by record from its stream; the output takes the first source's link type
 * and nanosecond timestamps when any source has them. A source that fails mid-answer is dropped
 * and reported; the others go on to the end.
 */
import {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  parseGlobalHeader,
  type PcapHeader,
  RECORD_HEADER_SIZE,
  writeGlobalHeader,
  writeRecordHeader,
} from "../store/pcap_format.ts";

/** Reads one pcap stream record by record. */
export class PcapStreamReader {
  readonly name: string;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = new Uint8Array(0);
  #at = 0;
  #ended = false;
  header: PcapHeader | undefined;
  /** The current record: time in seconds and nanoseconds, lengths and captured bytes. */
  sec = 0;
  nsec = 0;
  caplen = 0;
  wireLen = 0;
  data: Uint8Array = new Uint8Array(0);

  constructor(name: string, stream: ReadableStream<Uint8Array>) {
    this.name = name;
    this.#reader = stream.getReader();
  }

  /** Reads the global header; throws when the stream ends before it or it is not pcap. */
  async readHeader(): Promise<PcapHeader> {
    if (!await this.#fill(GLOBAL_HEADER_SIZE)) {
      throw new Error(`the answer ended before its pcap header`);
    }
    this.header = parseGlobalHeader(this.#buf, this.name, this.#at);
    this.#at += GLOBAL_HEADER_SIZE;
    return this.header;
  }

  /** Moves to the next record; false at the clean end of the stream, throws on a cut record. */
  async next(): Promise<boolean> {
    const h = this.header!;
    if (!await this.#fill(RECORD_HEADER_SIZE)) {
      if (this.#buf.length - this.#at === 0) return false;
      throw new Error(`the answer ended inside a record header`);
    }
    const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#at, 16);
    const caplen = view.getUint32(8, h.littleEndian);
    if (caplen > MAX_CAPLEN) throw new Error(`record of ${caplen} bytes: not a pcap answer`);
    this.sec = view.getUint32(0, h.littleEndian);
    const frac = view.getUint32(4, h.littleEndian);
    this.nsec = h.nanosecond ? frac : frac * 1000;
    this.wireLen = view.getUint32(12, h.littleEndian);
    this.caplen = caplen;
    if (!await this.#fill(RECORD_HEADER_SIZE + caplen)) {
      throw new Error(`the answer ended inside a record`);
    }
    const start = this.#at + RECORD_HEADER_SIZE;
    this.data = this.#buf.subarray(start, start + caplen);
    this.#at = start + caplen;
    return true;
  }

  /** Stops reading (the HTTP request is cancelled). */
  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }

  /** Makes `n` unread bytes available; false when the stream ended first. */
  async #fill(n: number): Promise<boolean> {
    while (this.#buf.length - this.#at < n) {
      if (this.#ended) return false;
      const { done, value } = await this.#reader.read();
      if (done) {
        this.#ended = true;
        continue;
      }
      const rest = this.#buf.subarray(this.#at);
      const joined = new Uint8Array(rest.length + value.length);
      joined.set(rest, 0);
      joined.set(value, rest.length);
      this.#buf = joined;
      this.#at = 0;
    }
    return true;
  }
}

/** Options of mergePcapStreams. */
export interface MergeOptions {
  /** Stop after this many packets. */
  limit: number;
  /** Called once per source that fails after the output started. */
  onSourceError: (name: string, error: Error) => void;
  /** Called when the output is complete (or cancelled) with the packet count. */
  onFinish?: (packets: number, cancelled: boolean) => void;
  /** End the output with an error instead of cleanly when a source failed (the client learns
   * that the answer is incomplete). */
  errorAtEndOnFailure: boolean;
}

const CHUNK = 256 * 1024;

/**
 * Merges sources whose headers are already read (`readHeader`) and that share a link type into
 * one pcap stream, ordered by time (ties: source order).
 */
export function mergePcapStreams(
  sources: PcapStreamReader[],
  options: MergeOptions,
): ReadableStream<Uint8Array> {
  const nanosecond = sources.some((s) => s.header!.nanosecond);
  const linkType = sources[0]?.header?.linkType ?? 1;
  const snaplen = Math.max(65535, ...sources.map((s) => s.header!.snaplen));
  const live: PcapStreamReader[] = [];
  let started = false;
  let packets = 0;
  let failed = false;
  const fail = (source: PcapStreamReader, error: unknown) => {
    failed = true;
    source.cancel();
    options.onSourceError(source.name, error instanceof Error ? error : new Error(String(error)));
  };
  const advance = async (source: PcapStreamReader): Promise<boolean> => {
    try {
      return await source.next();
    } catch (error) {
      fail(source, error);
      return false;
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const out = new Uint8Array(CHUNK + RECORD_HEADER_SIZE + MAX_CAPLEN + GLOBAL_HEADER_SIZE);
      const view = new DataView(out.buffer);
      let used = 0;
      if (!started) {
        started = true;
        writeGlobalHeader(view, 0, { linkType, snaplen, nanosecond });
        used = GLOBAL_HEADER_SIZE;
        const firsts = await Promise.all(sources.map(advance));
        sources.forEach((s, i) => firsts[i] && live.push(s));
      }
      while (used < CHUNK && live.length > 0 && packets < options.limit) {
        let best = 0;
        for (let i = 1; i < live.length; i++) {
          const a = live[i], b = live[best];
          if (a.sec < b.sec || (a.sec === b.sec && a.nsec < b.nsec)) best = i;
        }
        const s = live[best];
        const frac = nanosecond ? s.nsec : Math.floor(s.nsec / 1000);
        writeRecordHeader(view, used, s.sec, frac, s.caplen, s.wireLen);
        out.set(s.data, used + RECORD_HEADER_SIZE);
        used += RECORD_HEADER_SIZE + s.caplen;
        packets++;
        if (!await advance(s)) live.splice(best, 1);
      }
      if (used > 0) controller.enqueue(out.slice(0, used));
      if (live.length === 0 || packets >= options.limit) {
        for (const s of live) s.cancel();
        options.onFinish?.(packets, false);
        if (failed && options.errorAtEndOnFailure) {
          controller.error(new Error("A sensor failed during the answer"));
        } else controller.close();
      }
    },
    cancel() {
      for (const s of sources) s.cancel();
      options.onFinish?.(packets, true);
    },
  }, { highWaterMark: 1 });
}
