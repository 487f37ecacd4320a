/**
 * Helpers for the store tests: realistic frames, and an independent oracle (tcpdump/libpcap
 * re-writing our files, parsed by a ten-line parser that shares no code with src/store).
 */
import { q, shell } from "./support/process.ts";
import { prng } from "./support/prng.ts";

/** One test packet. */
export interface TestPacket {
  data: Uint8Array;
  wireLen: number;
  tsSec: number;
  tsFrac: number;
}

/** A record as libpcap saw it. */
export interface OracleRecord {
  tsSec: number;
  tsFrac: number;
  caplen: number;
  len: number;
  data: Uint8Array;
}

export { prng };

const TEXT = new TextEncoder().encode(
  "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: cutcap-test/1.0\r\n" +
    "Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, deflate\r\n\r\n" +
    "<html><head><title>Example</title></head><body><p>Lorem ipsum dolor sit amet</p>",
);

/**
 * Ethernet/IPv4/TCP frames with a realistic size mix (many ACK-sized, many full-size) and a
 * payload that is half text, half random, so compression ratios look like real traffic.
 * Timestamps start at `startSec` and advance by `stepMicros` (µs, or ns when `nanosecond`).
 */
export function makePackets(
  count: number,
  options: { seed?: number; startSec?: number; stepMicros?: number; nanosecond?: boolean } = {},
): TestPacket[] {
  const rnd = prng(options.seed ?? 1);
  const out: TestPacket[] = [];
  let sec = options.startSec ?? 1_700_000_000;
  let frac = 0;
  const unit = options.nanosecond ? 1e9 : 1e6;
  const step = options.stepMicros ?? 137;
  for (let i = 0; i < count; i++) {
    const r = rnd();
    const size = r < 0.4
      ? 66
      : r < 0.55
      ? 60 + Math.floor(rnd() * 500)
      : r < 0.9
      ? 1514
      : 100 + Math.floor(rnd() * 1400);
    const frame = new Uint8Array(size);
    // Ethernet
    frame.set([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00], 0);
    // IPv4 198.18.x.y -> 198.19.x.y, TCP
    const flow = Math.floor(rnd() * 50);
    frame.set([0x45, 0, (size - 14) >> 8, (size - 14) & 255, 0, i & 255, 0x40, 0, 64, 6, 0, 0], 14);
    frame.set([198, 18, 0, flow, 198, 19, 0, flow], 26);
    frame.set(
      [0x30, 0x39, 0, 80, 0, 0, i >> 8 & 255, i & 255, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff],
      34,
    );
    for (let p = 54; p < size; p++) {
      frame[p] = p < 54 + (size - 54) / 2 ? TEXT[(p + i) % TEXT.length] : Math.floor(rnd() * 256);
    }
    out.push({ data: frame, wireLen: size, tsSec: sec, tsFrac: frac });
    frac += step;
    while (frac >= unit) {
      frac -= unit;
      sec++;
    }
  }
  return out;
}

/**
 * Has libpcap read `path` (through zcat/zstdcat for compressed files) and write it again;
 * returns the records it saw and tcpdump's stderr (minus its "reading from" line).
 */
export async function tcpdumpRecords(
  path: string,
  options: { nanosecond?: boolean } = {},
): Promise<{ records: OracleRecord[]; stderr: string; linkType: number }> {
  const prec = options.nanosecond ? "--time-stamp-precision=nano " : "";
  const src = path.endsWith(".gz")
    ? `zcat ${q(path)} | tcpdump ${prec}-r - -w -`
    : path.endsWith(".zst")
    ? `zstdcat ${q(path)} | tcpdump ${prec}-r - -w -`
    : `tcpdump ${prec}-r ${q(path)} -w -`;
  const r = await shell(src);
  const stderr = r.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("reading from")).join(
    "\n",
  );
  const b = r.stdout;
  if (b.length < 24) {
    return { records: [], stderr: stderr || `no output (exit ${r.code})`, linkType: -1 };
  }
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const records: OracleRecord[] = [];
  for (let p = 24; p + 16 <= b.length;) {
    const caplen = v.getUint32(p + 8, true);
    records.push({
      tsSec: v.getUint32(p, true),
      tsFrac: v.getUint32(p + 4, true),
      caplen,
      len: v.getUint32(p + 12, true),
      data: b.slice(p + 16, p + 16 + caplen),
    });
    p += 16 + caplen;
  }
  return { records, stderr, linkType: v.getUint32(20, true) };
}

/** The records we expect libpcap to see for `packets` (cut to `snaplen`). */
export function expectedRecords(packets: TestPacket[], snaplen = 262144): OracleRecord[] {
  return packets.map((p) => {
    const caplen = Math.min(p.data.length, snaplen);
    return {
      tsSec: p.tsSec,
      tsFrac: p.tsFrac,
      caplen,
      len: p.wireLen,
      data: p.data.slice(0, caplen),
    };
  });
}

/** One block of a block table: file offset, compressed length, uncompressed start and length. */
export interface BlockRow {
  fileOffset: number;
  compressedLength: number;
  start: number;
  length: number;
}

/** The rows of a block table (4 numbers per block). */
export function blockRows(blocks: Float64Array): BlockRow[] {
  const rows: BlockRow[] = [];
  for (let i = 0; i < blocks.length; i += 4) {
    rows.push({
      fileOffset: blocks[i],
      compressedLength: blocks[i + 1],
      start: blocks[i + 2],
      length: blocks[i + 3],
    });
  }
  return rows;
}

/** A fresh temporary directory (removed by the caller). */
export function tempDir(prefix: string): string {
  return Deno.makeTempDirSync({ prefix: `cutcap-store-${prefix}-` });
}

/** All regular files under `dir`, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...listFiles(p));
    else if (e.isFile) out.push(p);
  }
  return out.sort();
}
