/**
 * The codec table: every way cutcap can compress a pcap file in blocks. `--compress`'s values and
 * help, the file-name suffixes, the index's codec field and the detection of a file's codec all
 * come from here. Adding a codec: one file in codec/ (see codec/codec.ts) and one entry below.
 */
import type { Codec } from "./codec/codec.ts";
import { gzip } from "./codec/gzip.ts";
import { none } from "./codec/none.ts";
import { zstd } from "./codec/zstd.ts";

/** The codecs; `none` last, as detection asks them in order and it claims any file. */
const TABLE = [gzip, zstd, none] as const;

/** How a pcap file's blocks are compressed: a codec's name. */
export type Compression = (typeof TABLE)[number]["name"];

/** The codec names, `none` first (the order `--compress` lists them in). */
export const COMPRESSIONS: readonly Compression[] = [
  none.name,
  ...TABLE.slice(0, -1).map((c) => c.name),
];

const BY_NAME = new Map<string, Codec>(TABLE.map((c) => [c.name, c]));

/** The codec called `name`. */
export function codec(name: Compression): Codec {
  return BY_NAME.get(name)!;
}

/** Whether `name` is a codec's name. */
export function isCompression(name: string): name is Compression {
  return BY_NAME.has(name);
}

/** The codec of a file from its first bytes (at least 4 when the file has them). */
export function detectCompression(head: Uint8Array): Compression {
  return TABLE.find((c) => c.detect(head))!.name;
}

/** The codec with index code `code`; throws on an unknown code. */
export function compressionFromCode(code: number): Compression {
  const found = TABLE.find((c) => c.indexCode === code);
  if (found === undefined) {
    throw new Error(
      `Invalid compression code ${code}: expected ${
        orList(TABLE.map((c) => String(c.indexCode)).sort())
      }`,
    );
  }
  return found.name;
}

/** The codec whose file-name suffix is `suffix` (`""` is none); null for another suffix. */
export function compressionFromSuffix(suffix: string): Compression | null {
  return TABLE.find((c) => c.suffix === suffix)?.name ?? null;
}

/**
 * A regular-expression source matching the suffix of any compressed codec (`\.gz|\.zst`), for
 * file-name patterns: wrap it in `(?:…)?`.
 */
export const COMPRESSED_SUFFIX_PATTERN = TABLE.filter((c) => c.suffix !== "")
  .map((c) => escapeRegExp(c.suffix)).join("|");

/** Every suffix a compressed pcap may have (cutcap's and other tools'), without the dot. */
export const COMPRESSED_SUFFIXES: readonly string[] = TABLE.flatMap((c) =>
  [c.suffix, ...c.otherSuffixes].filter((s) => s !== "").map((s) => s.slice(1))
);

/** `a, b or c`. */
export function orList(items: readonly string[]): string {
  return items.length <= 1
    ? items.join("")
    : `${items.slice(0, -1).join(", ")} or ${items[items.length - 1]}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
