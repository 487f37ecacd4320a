/**
 * Merging sensors' answers (HTTP bodies, pcap or pcapng) by packet time into one answer, as they
 * arrive. Each source is read record by record from its stream. The output is pcap when every
 * source is pcap of one link type (nanosecond timestamps when any source has them), else pcapng
 * with one interface per (link type, snaplen, resolution), written before its first packet. A
 * source that fails mid-answer is dropped and reported; the others go on to the end.
 */
import {
  GLOBAL_HEADER_SIZE,
  MAX_CAPLEN,
  parseGlobalHeader,
  RECORD_HEADER_SIZE,
  writeGlobalHeader,
  writeRecordHeader,
} from "../pcap/format.ts";
import {
  finishPacketBlock,
  PCAPNG_EPB,
  PCAPNG_IDB,
  PCAPNG_SHB,
  SECTION_HEADER_SIZE,
  writeInterfaceBlock,
  writePacketBlockHeader,
  writeSectionHeader,
} from "../pcap/pcapng.ts";

/** One interface of a source: what its packets' link layer and clock are. */
interface SourceInterface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second (1e6, 1e9, …). */
  units: number;
}

const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
/** Largest pcapng block accepted (a packet of MAX_CAPLEN plus headers and options). */
const MAX_BLOCK = MAX_CAPLEN + 65536;

/** Reads one pcap or pcapng stream record by record. */
export class PcapStreamReader {
  readonly name: string;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buf = new Uint8Array(0);
  #at = 0;
  #ended = false;
  /** "pcap" or "pcapng", known after readHeader. */
  format: "pcap" | "pcapng" = "pcap";
  #littleEndian = true;
  /** pcap: the one interface; pcapng: those described so far. */
  readonly interfaces: SourceInterface[] = [];
  /** The current record: time in seconds and nanoseconds, interface, lengths and bytes. */
  sec = 0;
  nsec = 0;
  iface: SourceInterface = { linkType: 1, snaplen: 65535, units: 1e6 };
  caplen = 0;
  wireLen = 0;
  data: Uint8Array = new Uint8Array(0);

  constructor(name: string, stream: ReadableStream<Uint8Array>) {
    this.name = name;
    this.#reader = stream.getReader();
  }

  /** Reads the file header; throws when the stream ends before it or it is neither format. */
  async readHeader(): Promise<void> {
    if (!await this.#fill(GLOBAL_HEADER_SIZE)) {
      throw new Error(`the answer ended before its file header`);
    }
    const view = this.#view(0, 12);
    if (view.getUint32(0, true) === PCAPNG_SHB) {
      this.format = "pcapng";
      this.#littleEndian = view.getUint32(8, true) === BYTE_ORDER_MAGIC;
      await this.#skipBlock();
      return;
    }
    const header = parseGlobalHeader(this.#buf, this.name, this.#at);
    this.#littleEndian = header.littleEndian;
    this.interfaces.push({
      linkType: header.linkType,
      snaplen: header.snaplen,
      units: header.nanosecond ? 1e9 : 1e6,
    });
    this.#at += GLOBAL_HEADER_SIZE;
  }

  /** Moves to the next packet; false at the clean end of the stream, throws on a cut record. */
  next(): Promise<boolean> {
    return this.format === "pcap" ? this.#nextPcap() : this.#nextPcapng();
  }

  /** Stops reading (the HTTP request is cancelled). */
  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }

  async #nextPcap(): Promise<boolean> {
    if (!await this.#fill(RECORD_HEADER_SIZE)) return this.#cleanEnd("a record header");
    const view = this.#view(0, RECORD_HEADER_SIZE);
    const caplen = view.getUint32(8, this.#littleEndian);
    if (caplen > MAX_CAPLEN) throw new Error(`record of ${caplen} bytes: not a pcap answer`);
    this.iface = this.interfaces[0];
    this.sec = view.getUint32(0, this.#littleEndian);
    const frac = view.getUint32(4, this.#littleEndian);
    this.nsec = this.iface.units === 1e9 ? frac : frac * 1000;
    this.wireLen = view.getUint32(12, this.#littleEndian);
    this.caplen = caplen;
    if (!await this.#fill(RECORD_HEADER_SIZE + caplen)) {
      throw new Error(`the answer ended inside a record`);
    }
    this.#take(RECORD_HEADER_SIZE, caplen);
    return true;
  }

  async #nextPcapng(): Promise<boolean> {
    for (;;) {
      if (!await this.#fill(8)) return this.#cleanEnd("a block header");
      const head = this.#view(0, 8);
      const type = head.getUint32(0, this.#littleEndian);
      const length = head.getUint32(4, this.#littleEndian);
      if (length < 12 || length % 4 !== 0 || length > MAX_BLOCK) {
        throw new Error(`pcapng block of ${length} bytes: not a pcapng answer`);
      }
      if (!await this.#fill(length)) throw new Error(`the answer ended inside a block`);
      const view = this.#view(0, length);
      if (type === PCAPNG_IDB) {
        this.interfaces.push({
          linkType: view.getUint16(8, this.#littleEndian),
          snaplen: view.getUint32(12, this.#littleEndian),
          units: tsUnits(view, length, this.#littleEndian),
        });
      } else if (type === PCAPNG_EPB) {
        this.#readPacketBlock(view);
        this.#take(28, this.caplen, length);
        return true;
      }
      this.#at += length;
    }
  }

  #readPacketBlock(view: DataView): void {
    const le = this.#littleEndian;
    const iface = this.interfaces[view.getUint32(8, le)];
    if (iface === undefined) throw new Error(`packet of an undescribed interface`);
    const ts = (BigInt(view.getUint32(12, le)) << 32n) | BigInt(view.getUint32(16, le));
    const units = BigInt(iface.units);
    this.iface = iface;
    this.sec = Number(ts / units);
    this.nsec = Math.round(Number(ts % units) * 1e9 / iface.units);
    this.caplen = view.getUint32(20, le);
    this.wireLen = view.getUint32(24, le);
    if (28 + this.caplen > view.byteLength - 4) throw new Error(`packet longer than its block`);
  }

  /** The record's bytes start `skip` bytes in; the record takes `size` bytes (default skip+len). */
  #take(skip: number, length: number, size = skip + length): void {
    const start = this.#at + skip;
    this.data = this.#buf.subarray(start, start + length);
    this.#at += size;
  }

  async #skipBlock(): Promise<void> {
    if (!await this.#fill(8)) throw new Error(`the answer ended inside a block`);
    const length = this.#view(0, 8).getUint32(4, this.#littleEndian);
    if (length < 12 || length > MAX_BLOCK || !await this.#fill(length)) {
      throw new Error(`bad or cut pcapng section header`);
    }
    this.#at += length;
  }

  #cleanEnd(what: string): boolean {
    if (this.#buf.length - this.#at === 0) return false;
    throw new Error(`the answer ended inside ${what}`);
  }

  #view(offset: number, length: number): DataView {
    return new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#at + offset, length);
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

/** if_tsresol of an interface block: units per second (10^v, or 2^v with the top bit). */
function tsUnits(view: DataView, length: number, le: boolean): number {
  for (let at = 16; at + 4 <= length - 4;) {
    const code = view.getUint16(at, le);
    const size = view.getUint16(at + 2, le);
    if (code === 0) break;
    if (code === 9 && size >= 1) {
      const v = view.getUint8(at + 4);
      return v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
    }
    at += 4 + ((size + 3) & ~3);
  }
  return 1e6;
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

/** The answer format for sources whose headers are read: pcap only when they all allow it. */
export function mergedFormat(sources: readonly PcapStreamReader[]): "pcap" | "pcapng" {
  if (sources.some((s) => s.format === "pcapng")) return "pcapng";
  return new Set(sources.map((s) => s.interfaces[0].linkType)).size > 1 ? "pcapng" : "pcap";
}

const CHUNK = 256 * 1024;
const ROOM = CHUNK + 2 * (MAX_CAPLEN + 64) + SECTION_HEADER_SIZE;

/**
 * Merges sources whose headers are already read (`readHeader`) into one answer of `format`,
 * ordered by time (ties: source order).
 */
export function mergePcapStreams(
  sources: PcapStreamReader[],
  format: "pcap" | "pcapng",
  options: MergeOptions,
): ReadableStream<Uint8Array> {
  const writer = format === "pcap" ? new PcapOut(sources) : new PcapngOut();
  const live: PcapStreamReader[] = [];
  let started = false;
  let packets = 0;
  let failed = false;
  const advance = async (source: PcapStreamReader): Promise<boolean> => {
    try {
      return await source.next();
    } catch (error) {
      failed = true;
      source.cancel();
      options.onSourceError(source.name, error instanceof Error ? error : new Error(String(error)));
      return false;
    }
  };
  /** The last chunk is enqueued; the next pull ends the body with this error. */
  let endWith: Error | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Deno.serve drops chunks still queued when the body errors: error only once it took them.
      if (endWith !== null) return controller.error(endWith);
      const out = new Uint8Array(ROOM);
      const view = new DataView(out.buffer);
      let used = 0;
      if (!started) {
        started = true;
        used = writer.header(view);
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
        used += writer.packet(out, view, used, s);
        packets++;
        if (!await advance(s)) live.splice(best, 1);
      }
      if (used > 0) controller.enqueue(out.slice(0, used));
      if (live.length === 0 || packets >= options.limit) {
        for (const s of live) s.cancel();
        options.onFinish?.(packets, false);
        if (failed && options.errorAtEndOnFailure) {
          endWith = new Error("A sensor failed during the answer");
          if (used === 0) controller.error(endWith);
        } else controller.close();
      }
    },
    cancel() {
      for (const s of sources) s.cancel();
      options.onFinish?.(packets, true);
    },
  }, { highWaterMark: 1 });
}

/** Writes the answer's header and packets in one format. */
interface AnswerWriter {
  header(view: DataView): number;
  packet(out: Uint8Array, view: DataView, pos: number, s: PcapStreamReader): number;
}

/** pcap: the first source's link type, nanoseconds when any source has them. */
class PcapOut implements AnswerWriter {
  readonly #linkType: number;
  readonly #snaplen: number;
  readonly #nanosecond: boolean;

  constructor(sources: readonly PcapStreamReader[]) {
    this.#linkType = sources[0]?.interfaces[0].linkType ?? 1;
    this.#snaplen = Math.max(65535, ...sources.map((s) => s.interfaces[0].snaplen));
    this.#nanosecond = sources.some((s) => s.interfaces[0].units === 1e9);
  }

  header(view: DataView): number {
    writeGlobalHeader(view, 0, {
      linkType: this.#linkType,
      snaplen: this.#snaplen,
      nanosecond: this.#nanosecond,
    });
    return GLOBAL_HEADER_SIZE;
  }

  packet(out: Uint8Array, view: DataView, pos: number, s: PcapStreamReader): number {
    const frac = this.#nanosecond ? s.nsec : Math.floor(s.nsec / 1000);
    writeRecordHeader(view, pos, s.sec, frac, s.caplen, s.wireLen);
    out.set(s.data, pos + RECORD_HEADER_SIZE);
    return RECORD_HEADER_SIZE + s.caplen;
  }
}

/** pcapng: an interface per (link type, snaplen, resolution), described before its first packet. */
class PcapngOut implements AnswerWriter {
  readonly #ids = new Map<string, number>();

  header(view: DataView): number {
    return writeSectionHeader(view, 0);
  }

  packet(out: Uint8Array, view: DataView, pos: number, s: PcapStreamReader): number {
    const nanosecond = s.iface.units !== 1e6;
    const key = `${s.iface.linkType}/${s.iface.snaplen}/${nanosecond ? 9 : 6}`;
    let used = 0;
    let id = this.#ids.get(key);
    if (id === undefined) {
      id = this.#ids.size;
      this.#ids.set(key, id);
      used += writeInterfaceBlock(view, pos, {
        linkType: s.iface.linkType,
        snaplen: s.iface.snaplen,
        nanosecond,
      });
    }
    writePacketBlockHeader(view, pos + used, {
      iface: id,
      sec: s.sec,
      frac: nanosecond ? s.nsec : Math.floor(s.nsec / 1000),
      unitsPerSecond: nanosecond ? 1e9 : 1e6,
      caplen: s.caplen,
      wireLen: s.wireLen,
    });
    out.set(s.data, pos + used + 28);
    return used + finishPacketBlock(out, view, pos + used);
  }
}
