/**
 * Small archives built in-process for unit tests: crafted pcap files (pcap_craft.ts) written under
 * the archive's naming, each indexed by `indexPcapFile` as `cutcap index` would. Every record's
 * offset in its file is known, so a test can state exactly what a query must select and return.
 * Plain (uncompressed) files only: nothing here needs FFI, a subprocess or root.
 */
import { indexPcapFile } from "../../src/index/index_pcap.ts";
import { type CraftedRecord, pcapFile } from "./pcap_craft.ts";

/** A crafted capture file to place in an archive. */
export interface CraftedFile {
  /** Interface name in the file name (default "eth0"). */
  iface?: string;
  /** Worker number in the file name (default 0). */
  worker?: number;
  /** Link type (default 1, Ethernet). */
  linkType?: number;
  /** Snaplen in the pcap header (default 65535). */
  snaplen?: number;
  records: CraftedRecord[];
}

/** Where a crafted file went, and where its records are. */
export interface PlacedFile {
  /** Path relative to the archive, as the catalog lists it. */
  path: string;
  absPath: string;
  /** The file's bytes as written. */
  bytes: Uint8Array;
  /** Offset of each record's 16-byte header in the file, in record order. */
  offsets: number[];
}

/**
 * The archive path of a file whose first packet is at `firstUs` (microseconds):
 * `YYYY/MM/DD/<first packet time>Z_<iface>_w<NN>.pcap`.
 */
export function archivePathFor(firstUs: number, iface: string, worker: number): string {
  const iso = new Date(Math.floor(firstUs / 1000)).toISOString(); // 2026-11-23T10:00:00.123Z
  const micros = String(firstUs % 1_000_000).padStart(6, "0");
  const day = iso.slice(0, 10).replaceAll("-", "/");
  const stamp = `${iso.slice(0, 10)}T${iso.slice(11, 19).replaceAll(":", "-")}.${micros}Z`;
  return `${day}/${stamp}_${iface}_w${String(worker).padStart(2, "0")}.pcap`;
}

/** Writes `file` into the archive at `outDir` and indexes it; its name comes from its first packet. */
export function placeFile(outDir: string, file: CraftedFile): PlacedFile {
  const first = Math.min(...file.records.map((r) => r.us));
  const path = archivePathFor(first, file.iface ?? "eth0", file.worker ?? 0);
  const absPath = `${outDir}/${path}`;
  const bytes = pcapFile(file.linkType ?? 1, file.snaplen ?? 65535, file.records);
  Deno.mkdirSync(absPath.slice(0, absPath.lastIndexOf("/")), { recursive: true });
  Deno.writeFileSync(absPath, bytes);
  indexPcapFile(absPath, { iface: file.iface ?? "eth0", worker: file.worker ?? 0 });
  const offsets: number[] = [];
  let at = 24;
  for (const r of file.records) {
    offsets.push(at);
    at += 16 + Math.min(r.caplen ?? r.frame.length, r.frame.length);
  }
  return { path, absPath, bytes, offsets };
}

/** The 16-byte header and captured bytes of record `i` of a placed file, as the file holds them. */
export function recordBytes(file: PlacedFile, i: number): Uint8Array {
  const at = file.offsets[i];
  const caplen = new DataView(file.bytes.buffer, file.bytes.byteOffset).getUint32(at + 8, true);
  return file.bytes.subarray(at, at + 16 + caplen);
}

/** The pcap header a query answer starts with: little-endian, µs, version 2.4, snaplen 262144. */
export function answerHeader(linkType: number): Uint8Array {
  return pcapFile(linkType, 262144, []);
}
