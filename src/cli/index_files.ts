/**
 * `cutcap index [--out DIR] FILE...`: makes existing pcap files (tcpdump's, gotm's) queryable by
 * `cutcap serve --out DIR` (or a sensor writing there), which sees files in an archive's
 * `YYYY/MM/DD/` folders only. With --out, each file is linked into that archive under its naming
 * (first packet time, source name; copied when on another filesystem) and indexed there; the
 * original stays where it was. Without --out, a file is indexed where it is, and a file outside an
 * archive's folders is said to be invisible to serve.
 */
import { parseStrict, sourceName } from "../config.ts";
import { type OptionTable, UsageError } from "./options.ts";
import { indexPcapFile, type IndexSummary } from "../index/index_pcap.ts";
import { PcapReader } from "../pcap/reader.ts";
import { isArchivedPath, outputFileName } from "../archive/naming.ts";

/** Option table of `cutcap index` (parser and help). */
export const INDEX_OPTIONS = {
  out: {
    type: "string",
    short: "o",
    arg: "DIR",
    help: "archive to file the files into (else each is indexed where it is)",
  },
  iface: {
    type: "string",
    default: "",
    arg: "NAME",
    help: "source name in the archive's file names and the index",
    shownDefault: "the file's base name",
  },
  json: { type: "boolean", default: false, help: "one JSON object per file instead of a line" },
} as const satisfies OptionTable;

/** Indexes (and files) each FILE; one line per file; exit 1 when any failed. */
export function runIndexCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseStrict(argv, INDEX_OPTIONS);
  if (positionals.length === 0) throw new UsageError("Missing files: cutcap index FILE...");
  let failed = 0;
  for (const file of positionals) {
    try {
      const done = indexOne(file, values.out, values.iface);
      console.log(values.json ? JSON.stringify({ file, ...done.summary }) : describe(file, done));
    } catch (error) {
      failed++;
      console.error(`cutcap: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return Promise.resolve(failed > 0 ? 1 : 0);
}

/** What became of one file. */
interface Indexed {
  summary: IndexSummary;
  /** Where it is in the archive: `filed` (by --out), `archived` (already), or `outside`. */
  place: "filed" | "archived" | "outside";
}

/** Indexes one file, filing it into `out` first when given and not in an archive already. */
function indexOne(file: string, out: string | undefined, iface: string): Indexed {
  const info = statFile(file);
  const archived = isArchivedPath(file);
  if (out === undefined || archived) {
    return { summary: indexPcapFile(file, { iface }), place: archived ? "archived" : "outside" };
  }
  const name = iface || sourceName(file);
  const dest = archivePath(file, out, name);
  if (dest === null) throw new Error(`${file}: no packets to file into the archive`);
  if (!sameFile(dest, info)) fileInto(file, dest);
  return { summary: indexPcapFile(dest, { iface: name, worker: 0 }), place: "filed" };
}

function statFile(file: string): Deno.FileInfo {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error(`${file}: no such file`);
    throw new Error(`${file}: ${error instanceof Error ? error.message : error}`);
  }
  if (info.isDirectory) {
    throw new Error(`${file} is a directory: give the pcap files in it (${file}/*.pcap)`);
  }
  return info;
}

/** Where the file goes in the archive, from its first packet; null when it has none. */
function archivePath(file: string, out: string, name: string): string | null {
  const reader = new PcapReader(file);
  try {
    if (!reader.next()) return null;
    const micros = reader.nanosecond ? Math.floor(reader.tsFrac / 1000) : reader.tsFrac;
    // The name's suffix is the file's own compression, whatever its suffix said.
    const rel = outputFileName(reader.tsSec, micros, {
      iface: name,
      worker: 0,
      compress: reader.compress,
    });
    return `${out}/${rel}`;
  } finally {
    reader.close();
  }
}

function sameFile(path: string, info: Deno.FileInfo): boolean {
  try {
    const there = Deno.statSync(path);
    if (there.dev === info.dev && there.ino === info.ino) return true;
  } catch {
    return false;
  }
  throw new Error(`${path} exists already: give another --iface to file this one beside it`);
}

/** A hard link (no copy, no extra space) when on the same filesystem, else a copy. */
function fileInto(file: string, dest: string): void {
  Deno.mkdirSync(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
  try {
    Deno.linkSync(file, dest);
  } catch {
    Deno.copyFileSync(file, dest);
  }
}

/** The line for one file: where it is, what its index holds, whether serve will see it. */
function describe(file: string, { summary, place }: Indexed): string {
  const time = (ts: number) => new Date(ts * 1000).toISOString();
  const range = summary.packets > 0 ? `, ${time(summary.firstTs)} to ${time(summary.lastTs)}` : "";
  const stopped = summary.stopReason ? ` (stopped early: ${summary.stopReason})` : "";
  const facts = `${summary.packets} packets, ${summary.flows} flows${range}${stopped}`;
  if (place === "filed") return `${file} → ${summary.pcapPath}: ${facts}`;
  if (place === "archived") return `${file}: indexed in place, ${facts}`;
  return `${file}: indexed in place, ${facts}; not in an archive's YYYY/MM/DD folders, so ` +
    "cutcap serve does not see it: cutcap index --out ARCHIVE files it into one";
}
