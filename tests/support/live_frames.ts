/**
 * Hand-made frames for live capture tests (Ethernet + IPv4 + UDP, fragments), the pcap file that
 * carries them to tcpreplay, and reading a capture source until it stays quiet.
 */
import type { CaptureSource } from "../../src/capture/mod.ts";
import { pcapFile } from "./pcap_craft.ts";

function checksum(b: Uint8Array, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i += 2) sum += (b[i] << 8) | (b[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Ethernet + IPv4 frame; `payload` is everything after the IP header. */
export function ipv4Frame(
  src: number,
  dst: number,
  payload: Uint8Array,
  opts: { proto?: number; id?: number; fragOffset?: number; moreFragments?: boolean } = {},
): Uint8Array {
  const f = new Uint8Array(34 + payload.length);
  const dv = new DataView(f.buffer);
  f.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0]);
  dv.setUint8(14, 0x45);
  dv.setUint16(16, 20 + payload.length);
  dv.setUint16(18, opts.id ?? 1);
  dv.setUint16(20, ((opts.moreFragments ?? false) ? 0x2000 : 0) | ((opts.fragOffset ?? 0) >> 3));
  dv.setUint8(22, 64);
  dv.setUint8(23, opts.proto ?? 17);
  dv.setUint32(26, src);
  dv.setUint32(30, dst);
  dv.setUint16(24, checksum(f, 14, 34));
  f.set(payload, 34);
  return f;
}

/** A UDP header and `size` bytes of payload. */
export function udp(sport: number, dport: number, size: number): Uint8Array {
  const u = new Uint8Array(8 + size);
  const dv = new DataView(u.buffer);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, 8 + size);
  for (let i = 0; i < size; i++) u[8 + i] = (i * 13 + sport) & 0xff;
  return u;
}

/** Writes `frames` as a microsecond pcap (Ethernet) for tcpreplay, 1 µs apart from 1700000000 s. */
export function writePcap(path: string, frames: Uint8Array[]): void {
  Deno.writeFileSync(
    path,
    pcapFile(1, 65535, frames.map((frame, i) => ({ us: 1700000000e6 + i, frame }))),
  );
}

/** 198.18.0.0 + n */
export function ip(n: number): number {
  return (0xc6120000 + n) >>> 0;
}

const IDLE_ROUNDS = 5;

/** Calls next() on every handle until each has timed out IDLE_ROUNDS times in a row. */
export function drain(
  handles: CaptureSource[],
  onPacket: (which: number, h: CaptureSource) => void,
): void {
  const idle = handles.map(() => 0);
  while (idle.some((n) => n < IDLE_ROUNDS)) {
    handles.forEach((h, which) => {
      if (idle[which] >= IDLE_ROUNDS) return;
      const rc = h.next();
      if (rc === 1) {
        idle[which] = 0;
        onPacket(which, h);
      } else if (rc === 0) {
        idle[which]++;
      } else {
        throw new Error(`next() on ${h.source} returned ${rc}: ${h.lastError()}`);
      }
    });
  }
}
