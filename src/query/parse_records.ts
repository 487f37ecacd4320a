/**
 * Parsing of the record predicates (record_terms.ts) in both dialects, called by parse.ts:
 *
 *   community-id 1:B64 | cid=1:B64                     the flow's Community ID v1
 *   cut | cut=1 | cut=0                                cut off by the cutoff, or not
 *   bytes OP SIZE | packets OP N    (OP: > >= < <=)    the flow's totals, stored or not
 *   ether host MAC | ether src MAC | ether dst MAC | mac=MAC
 *   ether proto N|NAME | ethertype=N|NAME | arp | rarp | lldp | stp
 *
 * `ether proto ip` / `ip6` (0x0800 / 0x86dd) mean the IP families, as in tcpdump.
 *
 * @module
 */
import { parseSize } from "../units.ts";
import { digestPrefix, parseCommunityId } from "../flow/community_id.ts";
import { ETHER_TYPES } from "../packet/describe.ts";
import { type Predicate, QueryError } from "./ast.ts";
import type { Token } from "./lexer.ts";

/** What the record parsers need of the parser: its token cursor. */
export interface TermCursor {
  peek(ahead?: number): Token;
  next(): Token;
  /** Next token as the argument of `keyword`; throws when it is missing. */
  argument(keyword: Token, what: string): Token;
}

/** Words parsePrimitive hands to parseRecordPrimitive. */
export const RECORD_PRIMITIVES = "community-id, cut, bytes, packets, ether, arp, rarp, lldp, stp";
/** Classic keys parseClassic hands to parseRecordClassic. */
export const RECORD_KEYS = "cid, cut, mac, ethertype";

const CID_EXPECTED = "a Community ID such as 1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=";

/** A BPF-dialect record primitive starting with `t`, or null when `t` is not one. */
export function parseRecordPrimitive(t: Token, cur: TermCursor, seed: number): Predicate | null {
  const word = t.text.toLowerCase();
  switch (word) {
    case "community-id":
      return cidPredicate(base64Argument(cur, cur.argument(t, CID_EXPECTED)), seed);
    case "cut":
      return { type: "cut", cut: true };
    case "bytes":
    case "packets":
      return totalPredicate(t, word, cur);
    case "ether":
      return etherPredicate(t, cur);
    case "arp":
    case "rarp":
    case "lldp":
    case "stp":
      return { type: "ethertype", etherType: ETHER_TYPES[word] };
    default:
      return null;
  }
}

/** A classic `key=value` record term, or null when `key` is not one of RECORD_KEYS. */
export function parseRecordClassic(
  key: Token,
  value: Token,
  cur: TermCursor,
  seed: number,
): Predicate | null {
  switch (key.text.toLowerCase()) {
    case "cid":
      return cidPredicate(base64Argument(cur, value), seed);
    case "cut":
      if (value.text !== "0" && value.text !== "1") {
        throw new QueryError(
          `Invalid cut value "${value.text}" at position ${value.pos}: expected 1 (cut off) or 0 (not)`,
          value.pos,
        );
      }
      return { type: "cut", cut: value.text === "1" };
    case "mac":
      return { type: "mac", words: parseMac(value), dir: "any" };
    case "ethertype":
      return etherTypePredicate(value);
    default:
      return null;
  }
}

/** The word `t` with a `=` right after it glued back on (base64 padding splits at `=`). */
function base64Argument(cur: TermCursor, t: Token): Token {
  let text = t.text;
  while (cur.peek().kind === "=" && cur.peek().pos === t.pos + text.length) {
    cur.next();
    text += "=";
  }
  return { ...t, text };
}

function cidPredicate(t: Token, seed: number): Predicate {
  const digest = parseCommunityId(t.text);
  if (digest === null) {
    throw new QueryError(
      `Invalid Community ID "${t.text}" at position ${t.pos}: expected ${CID_EXPECTED} (version 1, base64 of 20 bytes)`,
      t.pos,
    );
  }
  return { type: "cid", digest, prefix: digestPrefix(digest), seed };
}

function totalPredicate(t: Token, what: "bytes" | "packets", cur: TermCursor): Predicate {
  const opToken = cur.argument(t, "a comparison (>, >=, <, <=)");
  let op = opToken.text;
  if (cur.peek().kind === "=" && cur.peek().pos === opToken.pos + op.length) {
    cur.next();
    op += "=";
  }
  if (op !== ">" && op !== ">=" && op !== "<" && op !== "<=") {
    throw new QueryError(
      `Invalid comparison "${op}" at position ${opToken.pos}: expected >, >=, < or <= (${what} > 1000)`,
      opToken.pos,
    );
  }
  const arg = cur.argument(opToken, what === "bytes" ? "a size such as 10MB" : "a packet count");
  let value: number;
  try {
    value = what === "bytes" ? parseSize(arg.text, "size") : Number(arg.text);
  } catch {
    value = NaN;
  }
  if (!Number.isSafeInteger(value) || (what === "packets" && !/^[0-9]+$/.test(arg.text))) {
    throw new QueryError(
      `Invalid ${what} "${arg.text}" at position ${arg.pos}: expected ${
        what === "bytes" ? "bytes or a size like 64KiB, 10MB, 1GiB" : "a whole number"
      }`,
      arg.pos,
    );
  }
  return { type: "total", what, op, value };
}

function etherPredicate(t: Token, cur: TermCursor): Predicate {
  const sub = cur.argument(t, "host, src, dst or proto");
  const word = sub.text.toLowerCase();
  if (word === "host" || word === "src" || word === "dst") {
    const mac = parseMac(cur.argument(sub, "a MAC address"));
    return { type: "mac", words: mac, dir: word === "host" ? "any" : word };
  }
  if (word === "proto") return etherTypePredicate(cur.argument(sub, "an EtherType"));
  throw new QueryError(
    `Unknown word "${sub.text}" after "ether" at position ${sub.pos}: expected host, src, dst or proto`,
    sub.pos,
  );
}

function etherTypePredicate(t: Token): Predicate {
  const text = t.text.toLowerCase().replace(/^\\/, "");
  if (text === "ip") return { type: "family", family: 4 };
  if (text === "ip6") return { type: "family", family: 6 };
  let value = Object.hasOwn(ETHER_TYPES, text) ? ETHER_TYPES[text] : NaN;
  if (/^(0x[0-9a-f]{1,4}|[0-9]{1,5})$/.test(text)) value = Number(text);
  if (!(value >= 0 && value <= 0xffff)) {
    throw new QueryError(
      `Invalid EtherType "${t.text}" at position ${t.pos}: expected 0-65535 (0x0806) or one of ip, ip6, ${
        Object.keys(ETHER_TYPES).join(", ")
      }`,
      t.pos,
    );
  }
  if (value === 0x0800) return { type: "family", family: 4 };
  if (value === 0x86dd) return { type: "family", family: 6 };
  return { type: "ethertype", etherType: value };
}

function parseMac(t: Token): [number, number] {
  const m =
    /^([0-9a-f]{1,2})([:-])([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})\2([0-9a-f]{1,2})$/i
      .exec(t.text);
  if (m === null) {
    throw new QueryError(
      `Invalid MAC address "${t.text}" at position ${t.pos}: expected six hex bytes like 00:1b:21:3c:4d:5e`,
      t.pos,
    );
  }
  const b = [m[1], m[3], m[4], m[5], m[6], m[7]].map((x) => parseInt(x, 16));
  return [
    ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0,
    ((b[4] << 24) | (b[5] << 16)) >>> 0,
  ];
}
