/**
 * Crash recovery: at start, every temporary output file (`.<name>.tmp`) a crash left behind is
 * repaired and finalized under its final name through the same hooks as a normal rotation, so it
 * gets indexed.
 *
 * Plain files are cut after their last complete record. Compressed files keep their complete
 * blocks; the complete records inside a damaged last block (truncated gzip members and zstd
 * frames decode partly) are rewritten as one clean block. A file with no complete record (a crash
 * before its first block reached the disk) is removed; a file that is not pcap at all is left
 * alone. Either way one log line says what happened.
 */
import {
  BlockTable,
  compressBlock,
  type Compression,
  defaultLevel,
  detectCompression,
  readAt,
  writeFully,
} from "../pcap/block_format.ts";
import { BlockWalker } from "../pcap/block_reader.ts";
import {
  type BeforeRenameHook,
  dirOf,
  type FinalizedFile,
  pathExists,
  syncDir,
  uniquePath,
} from "../store/pcap_file_writer.ts";
import {
  GLOBAL_HEADER_SIZE,
  MAGIC_MICROS,
  MAGIC_NANOS,
  RECORD_HEADER_SIZE,
} from "../pcap/format.ts";
import { PcapReader } from "../pcap/reader.ts";
import { finalPathFor, isTempName, isWriteTempName } from "./naming.ts";

/** Hooks for `recoverTempFiles`: the same as a rotating output's, plus a logger. */
export interface RecoveryHooks {
  /** Called before the rename; `info.recovered` is true, so the index is built by reading the file. */
  beforeRename?: BeforeRenameHook;
  /** Called after the rename. */
  onFinalized?: (file: FinalizedFile) => void;
  /** Receives one line per file; default console.error. */
  log?: (line: string) => void;
}

/** What recovery did with one temporary file. */
export interface RecoveryReport {
  tmpPath: string;
  /** Final path, null when the file was removed (no complete record) or left (not pcap). */
  path: string | null;
  compress: Compression;
  /** Complete records kept. */
  recordsKept: number;
  /** Bytes of the temporary file cut off or rewritten (its damaged tail). */
  bytesDropped: number;
  /** Why the file could not be recovered, null when it was. */
  error: string | null;
}

/**
 * Repairs and finalizes every `.<name>.pcap[.gz|.zst].tmp` under `outDir` (recursively), and removes
 * the half-written index and catalog files a crash left (`isWriteTempName`: nothing ever reads them). Call it only while
 * holding the archive lock: a running capture's files look the same.
 */
export function recoverTempFiles(outDir: string, hooks: RecoveryHooks = {}): RecoveryReport[] {
  const reports: RecoveryReport[] = [];
  for (const path of findTempFiles(outDir, isWriteTempName)) {
    try {
      const bytes = Deno.statSync(path).size;
      Deno.removeSync(path);
      hooks.log?.(`Recovery removed ${path}: an unfinished index or catalog (${bytes} bytes)`);
    } catch { /* gone meanwhile */ }
  }
  for (const path of findTempFiles(outDir, isTempName)) reports.push(recoverTempFile(path, hooks));
  return reports;
}

/** Repairs and finalizes one temporary file; see the module comment. */
export function recoverTempFile(tmpPath: string, hooks: RecoveryHooks = {}): RecoveryReport {
  const log = hooks.log ?? ((line: string) => console.error(line));
  const name = tmpPath.slice(tmpPath.lastIndexOf("/") + 1);
  const finalPath = finalPathFor(tmpPath);
  const report: RecoveryReport = {
    tmpPath,
    path: null,
    compress: "none",
    recordsKept: 0,
    bytesDropped: 0,
    error: null,
  };
  if (finalPath === null) {
    report.error = `Not a cutcap temporary file name ${name}: expected .<name>.pcap[.gz|.zst].tmp`;
    log(`Recovery skipped ${tmpPath}: ${report.error}`);
    return report;
  }
  try {
    const size = Deno.statSync(tmpPath).size;
    const reader = openOrNull(tmpPath);
    if (reader === null && !isRemnant(tmpPath)) {
      report.error = `No pcap header in ${tmpPath}`;
      log(`Recovery left ${tmpPath} alone: it does not start with a pcap header (${size} bytes)`);
      return report;
    }
    const scan = reader === null ? null : scanRecords(reader);
    if (scan === null || scan.packets === 0) {
      report.compress = scan?.compress ?? "none";
      report.bytesDropped = size;
      Deno.removeSync(tmpPath);
      log(`Recovery removed ${tmpPath}: no complete record (${size} bytes dropped)`);
      return report;
    }
    const cut = cutFile(tmpPath, scan.compress, scan.end);
    const info: FinalizedFile = {
      path: uniqueFinal(finalPath),
      tmpPath,
      seq: 0,
      linkType: scan.linkType,
      snaplen: scan.snaplen,
      nanosecond: scan.nanosecond,
      compress: scan.compress,
      packets: scan.packets,
      firstTs: scan.firstTs,
      lastTs: scan.lastTs,
      bytesUncompressed: scan.end,
      bytesOnDisk: cut.size,
      blocks: scan.compress === "none" ? new Float64Array(0) : cut.blocks.toFloat64Array(),
      recovered: true,
    };
    report.compress = scan.compress;
    report.recordsKept = scan.packets;
    report.bytesDropped = size - cut.keptBytes;
    hooks.beforeRename?.(info);
    Deno.renameSync(tmpPath, info.path);
    syncDir(dirOf(info.path));
    report.path = info.path;
    log(
      `Recovered ${info.path}: kept ${scan.packets} records, dropped ${report.bytesDropped} bytes${
        scan.damage !== null ? ` (${scan.damage})` : ""
      }`,
    );
    hooks.onFinalized?.(info);
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err);
    log(`Recovery failed for ${tmpPath}: ${report.error}`);
  }
  return report;
}

/** What a temporary file holds up to its first damage. */
interface Scan {
  compress: Compression;
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  packets: number;
  firstTs: number;
  lastTs: number;
  /** End of the last complete record in the decompressed stream. */
  end: number;
  damage: string | null;
}

/** Reads records up to the first damage (or implausible record) and closes the reader. */
function scanRecords(reader: PcapReader): Scan {
  const scale = reader.nanosecond ? 1e9 : 1e6;
  const scan: Scan = {
    compress: reader.compress,
    linkType: reader.linkType,
    snaplen: reader.snaplen,
    nanosecond: reader.nanosecond,
    packets: 0,
    firstTs: 0,
    lastTs: 0,
    end: GLOBAL_HEADER_SIZE,
    damage: null,
  };
  // All-zero record headers (time 0, length 0) are what a crash leaves at the end of a file (space
  // allocated, never written); cutcap may also have written such a record itself (it keeps records
  // as it read them, a zero-length one included). So a run of them is garbage only when nothing but
  // zeros follows it; a real record after the run makes it data.
  let zeroRun: { end: number; packets: number; lastTs: number; at: string } | null = null;
  try {
    while (reader.next()) {
      if (reader.caplen > reader.snaplen) {
        scan.damage =
          `record ${reader.recordNumber} at offset ${reader.offset} is not a plausible record`;
        break;
      }
      const zero = reader.caplen === 0 && reader.len === 0 && reader.tsSec === 0 &&
        reader.tsFrac === 0;
      if (!zero) zeroRun = null;
      else {zeroRun ??= {
          end: scan.end,
          packets: scan.packets,
          lastTs: scan.lastTs,
          at: `record ${reader.recordNumber} at offset ${reader.offset}`,
        };}
      const ts = reader.tsSec + reader.tsFrac / scale;
      if (scan.packets === 0) scan.firstTs = ts;
      scan.lastTs = ts;
      scan.packets++;
      scan.end = reader.offset + RECORD_HEADER_SIZE + reader.caplen;
    }
    if (zeroRun !== null && scan.damage === null) {
      // Zeros to the end: cut before them.
      scan.end = zeroRun.end;
      scan.packets = zeroRun.packets;
      scan.lastTs = zeroRun.lastTs;
      if (scan.packets === 0) scan.firstTs = 0;
      scan.damage = `${zeroRun.at} starts zero bytes to the end (an unwritten tail)`;
    }
    scan.damage ??= reader.damage;
    return scan;
  } finally {
    reader.close();
  }
}

/**
 * Cuts the file so its decompressed stream ends at `end`: plain files are truncated; compressed
 * ones keep their complete blocks up to `end` as they are and rewrite the part of the next
 * (damaged, or cut) block up to `end` as one clean block. Returns the new block table and size,
 * and how many bytes of the file were kept as they were.
 */
function cutFile(
  path: string,
  compress: Compression,
  end: number,
): { blocks: BlockTable; size: number; keptBytes: number } {
  const file = Deno.openSync(path, { read: true, write: true });
  try {
    const table = new BlockTable();
    if (compress === "none") {
      file.truncateSync(end);
      file.syncSync();
      table.push(0, end, 0, end);
      return { blocks: table, size: end, keptBytes: end };
    }
    const walker = new BlockWalker(file, compress, path);
    let start = 0;
    let keptBytes = 0;
    let tail: Uint8Array | null = null;
    while (start < end && walker.next()) {
      const length = walker.truncated ? -1 : walker.uncompressedLength;
      if (length >= 0 && start + length <= end) {
        table.push(walker.fileOffset, walker.length, start, length);
        keptBytes = walker.fileOffset + walker.length;
        start += length;
        continue;
      }
      const decoded = walker.decode();
      if (decoded.length < end - start) {
        throw new Error(
          `Damaged block at offset ${walker.fileOffset} of ${path}: expected ${
            end - start
          } bytes, decoded ${decoded.length}`,
        );
      }
      tail = compressBlock(decoded.subarray(0, end - start), compress, defaultLevel(compress));
      table.push(keptBytes, tail.length, start, end - start);
      break;
    }
    file.truncateSync(keptBytes);
    let size = keptBytes;
    if (tail !== null) {
      file.seekSync(keptBytes, Deno.SeekMode.Start);
      writeFully(file, tail);
      size += tail.length;
    }
    file.syncSync();
    return { blocks: table, size, keptBytes };
  } finally {
    file.close();
  }
}

function openOrNull(path: string): PcapReader | null {
  try {
    return new PcapReader(path);
  } catch {
    return null;
  }
}

/**
 * True when a file without a readable pcap header is what a crash before the first block
 * leaves (empty, or a truncated start of a header or first block) rather than foreign data.
 */
function isRemnant(path: string): boolean {
  const file = Deno.openSync(path, { read: true });
  try {
    const head = new Uint8Array(GLOBAL_HEADER_SIZE);
    const n = readAt(file, 0, head, head.length);
    const compress = detectCompression(head.subarray(0, n));
    if (compress === "none") {
      if (n >= GLOBAL_HEADER_SIZE) return false;
      if (n < 4) return true;
      const magic = new DataView(head.buffer).getUint32(0, true);
      return magic === MAGIC_MICROS || magic === MAGIC_NANOS;
    }
    const walker = new BlockWalker(file, compress, path);
    return walker.next() && walker.truncated && walker.decode().length < GLOBAL_HEADER_SIZE;
  } finally {
    file.close();
  }
}

/** `path`, or a free variant when it exists (its own temporary file is the one recovered). */
function uniqueFinal(path: string): string {
  return pathExists(path) ? uniquePath(path) : path;
}

function findTempFiles(dir: string, wanted: (name: string) => boolean): string[] {
  const found: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return found;
    throw err;
  }
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) found.push(...findTempFiles(path, wanted));
    else if (e.isFile && wanted(e.name)) found.push(path);
  }
  return found.sort();
}
