/**
 * Every file-name rule of the archive, in one place (the pairs stenographer keeps in
 * `indexfile.go`): writers, recovery, the catalog, retention, queries and the server ask here.
 *
 * ```
 * <out>/YYYY/MM/DD/                                            day folder (UTC, first packet)
 *   YYYY-MM-DDTHH-MM-SS.ffffffZ_<iface>_w<NN>[_<n>].pcap[.gz|.zst]  finalized capture
 *   <that name>.idx                                             its index
 *   .<that name>.tmp                                            being written
 *   .<any name>.<random or pid>.tmp                              writeFileDurably's temporary file
 * <out>/.open/<iface>_w<NN>.json                                a worker's open-file state
 * <out>/catalog.json                                            the catalog's cache
 * <out>/.cutcap-export/                                         the flow exporter's spool
 * <out>/.cutcap-index-log-<pid>-<random>                        an index builder's spill file (unlinked)
 * ```
 *
 * It imports only the codec table (src/pcap/codecs.ts, whose suffixes the patterns are built
 * from), so every folder may import it.
 */
import {
  codec,
  COMPRESSED_SUFFIX_PATTERN,
  type Compression,
  compressionFromSuffix,
} from "../pcap/codecs.ts";

/** `(\.gz|\.zst)`: the compressed codecs' suffixes as a regular-expression group. */
const COMPRESSED = `(${COMPRESSED_SUFFIX_PATTERN})`;

const OUTPUT_NAME = new RegExp(
  String
    .raw`^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})-(\d{2})\.(\d{6})Z_(.+)_w(\d+)(?:_\d+)?\.pcap` +
    `${COMPRESSED}?$`,
);
/** A pcap file name the catalog takes in a day folder (not hidden, any stem). */
const PCAP_NAME = new RegExp(`^[^.].*\\.pcap${COMPRESSED}?$`);
/** `.<final name>.tmp` of an output file being written. */
const TEMP_NAME = new RegExp(`^\\.(.+\\.pcap${COMPRESSED}?)\\.tmp$`);
/** A finalized pcap inside an archive: `<archive>/YYYY/MM/DD/<name>.pcap[.gz|.zst]`. */
const ARCHIVED_PATH = new RegExp(
  String.raw`(^|/)\d{4}/\d{2}/\d{2}/[^./][^/]*\.pcap` + `${COMPRESSED}?$`,
);
/** Temporary files of `writeFileDurably` (indexes, the catalog): `.<name>.<random or pid>.tmp`. */
const WRITE_TEMP_NAME =
  /^\..+\.(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.tmp$/;

/** Suffix appended to a pcap file's path to name its index. */
export const INDEX_SUFFIX = ".idx";
/** Suffix of a hidden temporary file. */
export const TEMP_SUFFIX = ".tmp";
/** Directory under the archive holding one state file per worker with an open file. */
export const OPEN_DIR = ".open";
/** The catalog's cache file in the archive's root. */
export const CATALOG_FILE = "catalog.json";
/** The flow exporter's spool directory in the archive's root. */
export const SPOOL_DIR = ".cutcap-export";
/** Prefix of an index builder's spill file (unlinked once open; a crash in between leaves it). */
export const SPILL_PREFIX = ".cutcap-index-log-";
/** The year folder of a day folder (`YYYY`). */
export const YEAR_FOLDER = /^\d{4}$/;
/** The month and day folders of a day folder (`MM`, `DD`). */
export const MONTH_OR_DAY_FOLDER = /^\d{2}$/;

/** Fields of an output file name, see `parseOutputFileName`. */
export interface OutputNameFields {
  /** First packet time: whole seconds since the epoch. */
  startSec: number;
  /** First packet time: microseconds. */
  startMicros: number;
  iface: string;
  worker: number;
  compress: Compression;
}

/** The file-name suffix of a codec (`""`, `".gz"`, `".zst"`). */
export function codecSuffix(compress: Compression): string {
  return codec(compress).suffix;
}

/** Makes an interface name safe for a file name (`/dev/x` and the like). */
export function sanitizeIface(iface: string): string {
  const clean = iface.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[.-]+/, "");
  return clean === "" ? "unknown" : clean;
}

/** A worker number as file names write it: `w00`, `w01`, ... */
function workerTag(worker: number): string {
  return `w${String(worker).padStart(2, "0")}`;
}

/** The day folder (`YYYY/MM/DD`, UTC) of a time in Unix seconds. */
export function dayFolder(unixSeconds: number): string {
  const iso = new Date(unixSeconds * 1000).toISOString(); // 2024-05-01T12:34:56.000Z
  return `${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}`;
}

/**
 * The path of an output file, relative to the output directory:
 * `YYYY/MM/DD/YYYY-MM-DDTHH-MM-SS.ffffffZ_<iface>_w<NN>.pcap[.gz|.zst]` (UTC).
 */
export function outputFileName(
  startSec: number,
  startMicros: number,
  options: { iface: string; worker: number; compress: Compression },
): string {
  const iso = new Date(startSec * 1000).toISOString();
  const time = `${iso.slice(0, 10)}T${iso.slice(11, 13)}-${iso.slice(14, 16)}-${iso.slice(17, 19)}`;
  const micros = String(startMicros).padStart(6, "0");
  const iface = sanitizeIface(options.iface);
  return `${dayFolder(startSec)}/${time}.${micros}Z_${iface}_${workerTag(options.worker)}.pcap${
    codecSuffix(options.compress)
  }`;
}

/** Parses an output file's base name; null when it is not one. */
export function parseOutputFileName(name: string): OutputNameFields | null {
  const m = OUTPUT_NAME.exec(name);
  if (m === null) return null;
  const ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  return {
    startSec: ms / 1000,
    startMicros: +m[7],
    iface: m[8],
    worker: +m[9],
    compress: compressionFromSuffix(m[10] ?? "") ?? "none",
  };
}

/** `path` numbered to avoid a clash: `_<n>` before `.pcap` (`x.pcap.gz` → `x_2.pcap.gz`). */
export function numberedPath(path: string, n: number): string {
  const at = path.lastIndexOf(".pcap");
  return `${path.slice(0, at)}_${n}${path.slice(at)}`;
}

/** True for a pcap file name the catalog lists from a day folder (hidden files are not). */
export function isPcapName(name: string): boolean {
  return PCAP_NAME.test(name);
}

/** True when `path` lies in an archive's day folder (`…/YYYY/MM/DD/<name>.pcap[.gz|.zst]`). */
export function isArchivedPath(path: string): boolean {
  return ARCHIVED_PATH.test(path);
}

/** The temporary name a final path is written under: `.<name>.tmp` beside it. */
export function tempPathFor(path: string): string {
  const slash = path.lastIndexOf("/");
  return `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}${TEMP_SUFFIX}`;
}

/** The final path of an output file's temporary path; null when it is not one. */
export function finalPathFor(tmpPath: string): string | null {
  const slash = tmpPath.lastIndexOf("/");
  const m = TEMP_NAME.exec(tmpPath.slice(slash + 1));
  return m === null ? null : `${tmpPath.slice(0, slash + 1)}${m[1]}`;
}

/** True for the base name of an output file being written (`.<name>.pcap[.gz|.zst].tmp`). */
export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/** The prefix `writeFileDurably` gives the temporary file of `path` (a random part and `.tmp` follow). */
export function writeTempPrefix(path: string): string {
  return `.${path.slice(path.lastIndexOf("/") + 1)}.`;
}

/** True for the base name of a temporary file `writeFileDurably` left (a crash before its rename). */
export function isWriteTempName(name: string): boolean {
  return WRITE_TEMP_NAME.test(name);
}

/** Path of the index of a pcap file. */
export function indexPathFor(pcapPath: string): string {
  return pcapPath + INDEX_SUFFIX;
}

/** The state file of worker `worker` on interface `iface` (already sanitized). */
export function openStatePath(outDir: string, iface: string, worker: number): string {
  return `${outDir}/${OPEN_DIR}/${iface}_${workerTag(worker)}.json`;
}

/** `path` relative to the archive directory `outDir` that it lies in. */
export function archiveRelative(outDir: string, path: string): string {
  return path.startsWith(outDir) ? path.slice(outDir.length).replace(/^\/+/, "") : path;
}
