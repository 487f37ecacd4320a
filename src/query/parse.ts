/**
 * Query text -> AST. Both dialects parse into the same tree and mix freely in one query.
 *
 * Precedence, tightest first:
 *
 *   1. `not` / `!`                 unary, as in BPF          `!tcp|udp`     = (not tcp) or udp
 *   2. `|`                         classic union             `a b|c`        = a and (b or c)
 *   3. adjacency (whitespace)      classic intersection      `a b or c`     = (a and b) or c
 *   4. `and` `&&` `or` `||`        EQUAL precedence, left to right, like stenographer and
 *                                  libpcap                   `a or b and c` = (a or b) and c
 *
 * Parentheses override all of it. Adjacency being an AND makes BPF's qualified primitives read as
 * they do in tcpdump: `tcp port 80` = tcp and port 80, `ip host X` = ip and host X.
 *
 * Grammar:
 *   query   := expr END
 *   expr    := seq (("and" | "&&" | "or" | "||") seq)*
 *   seq     := union union*
 *   union   := unary ("|" unary)*
 *   unary   := ("not" | "!") unary | primary
 *   primary := "(" expr ")" | primitive | KEY "=" VALUE
 *
 * Primitives (keywords are case-insensitive):
 *   host ADDR | net ADDR[/LEN] | net ADDR mask MASK | port N | portrange N-M
 *   proto P | protocol P | ip proto P | ip6 proto P | ip | ip6 | tcp | udp | sctp | icmp | icmp6
 *   vlan N | mpls N | before TIME | after TIME          TIME := RFC 3339 | YYYY-MM-DD | DURATION ago
 * Classic terms: ip=ADDR | ip=ADDR-ADDR | ip=ADDR/LEN | port=N | protocol=P | proto=P
 *   | last=DURATION | vlan=N                   DURATION := (N s|m|h|d)+, e.g. 4h, 1h30m
 * P is 0-255 or one of icmp igmp tcp udp gre esp ah icmp6 sctp.
 *
 * Limits against hostile input: at most 65536 characters and 64 levels of parentheses/negations.
 */

import {
  compareWords,
  type Family,
  familyBits,
  maskToPrefix,
  parseAddress,
  prefixRange,
  type Words,
} from "./address.ts";
import { QueryError } from "./ast.ts";
import type { AddressPredicate, Predicate, Query, TimePredicate } from "./ast.ts";
import { type Token, tokenize } from "./lexer.ts";
import {
  parseRecordClassic,
  parseRecordPrimitive,
  RECORD_KEYS,
  RECORD_PRIMITIVES,
} from "./parse_records.ts";

export { QueryError };

/**
 * Longest accepted query text, in characters: room for a generated list of thousands of hosts (the
 * server's 64 KiB body limit is the same size).
 */
export const MAX_QUERY_LENGTH = 65536;
/** Deepest accepted nesting of parentheses and negations. */
export const MAX_QUERY_DEPTH = 64;
/** Longest accepted duration (`last=`, `N ago`), in seconds: about 317 years. */
const MAX_DURATION_SECONDS = 1e10;

/** Options of parseQuery. */
export interface ParseOptions {
  /** Reference time for `last=` and `ago`, in seconds since the epoch; default Date.now()/1000. */
  now?: number;
  /** Seed of `community-id`/`cid=` terms (`--community-id-seed`); default 0. */
  communityIdSeed?: number;
  /** Accept `sensor NAME` / `sensor=NAME` (the fleet coordinator's extra primitive). */
  sensors?: boolean;
}

const PROTOCOL_NAMES: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  tcp: 6,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  icmp6: 58,
  sctp: 132,
};

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

const PRIMITIVES =
  "host, net, port, portrange, proto, ip, ip6, tcp, udp, sctp, icmp, icmp6, vlan, mpls, before, after, " +
  RECORD_PRIMITIVES;
const CLASSIC_KEYS = "ip, port, protocol, proto, last, vlan, " + RECORD_KEYS;

/**
 * Parses query text in either dialect (or both mixed). Relative times (`last=4h`, `after 2h ago`)
 * are resolved against `opts.now` here, once. Throws QueryError on malformed input.
 */
export function parseQuery(text: string, opts: ParseOptions = {}): Query {
  if (text.length > MAX_QUERY_LENGTH) {
    throw new QueryError(
      `Query too long at position ${MAX_QUERY_LENGTH}: expected at most ${MAX_QUERY_LENGTH} characters, found ${text.length}`,
      MAX_QUERY_LENGTH,
    );
  }
  const now = opts.now ?? Date.now() / 1000;
  if (!Number.isFinite(now)) throw new RangeError(`Invalid now ${now}: expected a finite number`);
  return new Parser(tokenize(text), now, opts.sensors ?? false, opts.communityIdSeed ?? 0)
    .parseTop();
}

function lower(t: Token): string {
  return t.kind === "word" ? t.text.toLowerCase() : t.text;
}

function isBinaryOperator(t: Token): boolean {
  if (t.kind === "&&" || t.kind === "||") return true;
  if (t.kind !== "word") return false;
  const w = t.text.toLowerCase();
  return w === "and" || w === "or";
}

function describe(t: Token): string {
  return t.kind === "end" ? "end of query" : `"${t.text}"`;
}

function join(type: "and" | "or", children: Query[]): Query {
  // Flatten same-operator children so `a and b and c` is one node (the matcher recurses less).
  const flat: Query[] = [];
  for (const c of children) {
    if (c.type === type) flat.push(...c.children);
    else flat.push(c);
  }
  return flat.length === 1 ? flat[0] : { type, children: flat };
}

class Parser {
  private i = 0;
  private depth = 0;

  constructor(
    private readonly tokens: Token[],
    private readonly now: number,
    private readonly sensors: boolean,
    private readonly cidSeed: number,
  ) {}

  /** `sensor NAME` / `sensor=NAME`: only where a fleet answers (a sensor knows no other). */
  private sensorTerm(keyword: Token, value: Token): Predicate {
    if (!this.sensors) {
      throw new QueryError(
        `Unsupported word "${keyword.text}" at position ${keyword.pos}: sensor terms are answered by cutcap fleet, not by one sensor`,
        keyword.pos,
      );
    }
    if (!/^[A-Za-z0-9._:-]{1,255}$/.test(value.text)) {
      throw new QueryError(
        `Invalid sensor name "${value.text}" at position ${value.pos}: expected letters, digits, ".", "_", ":" or "-"`,
        value.pos,
      );
    }
    return { type: "sensor", name: value.text };
  }

  peek(ahead = 0): Token {
    return this.tokens[Math.min(this.i + ahead, this.tokens.length - 1)];
  }

  next(): Token {
    const t = this.peek();
    if (t.kind !== "end") this.i++;
    return t;
  }

  parseTop(): Query {
    const first = this.peek();
    if (first.kind === "end") {
      throw new QueryError("Empty query at position 0: expected at least one term", 0);
    }
    const q = this.parseExpr();
    const t = this.peek();
    if (t.kind === ")") {
      throw new QueryError(
        `Unbalanced parenthesis at position ${t.pos}: found ")" without a matching "("`,
        t.pos,
      );
    }
    if (t.kind !== "end") this.unexpected(t, "an operator or the end of the query");
    return q;
  }

  private parseExpr(): Query {
    // A run of one operator is gathered before it is joined, so `host a or host b or …` with
    // thousands of hosts costs linear time, not a copy of the node per operator.
    let left = this.parseSeq();
    let run: Query[] = [];
    let runKind: "and" | "or" = "and";
    while (isBinaryOperator(this.peek())) {
      const op = this.next();
      const kind = op.kind === "&&" || lower(op) === "and" ? "and" : "or";
      this.expectTermAfter(op);
      if (run.length > 0 && kind !== runKind) {
        left = join(runKind, [left, ...run]);
        run = [];
      }
      runKind = kind;
      run.push(this.parseSeq());
    }
    return run.length === 0 ? left : join(runKind, [left, ...run]);
  }

  private parseSeq(): Query {
    const items = [this.parseUnion()];
    while (this.startsTerm(this.peek())) items.push(this.parseUnion());
    return join("and", items);
  }

  private parseUnion(): Query {
    const items = [this.parseUnary()];
    while (this.peek().kind === "|") {
      const op = this.next();
      this.expectTermAfter(op);
      items.push(this.parseUnary());
    }
    return join("or", items);
  }

  private parseUnary(): Query {
    const t = this.peek();
    if (t.kind === "!" || lower(t) === "not") {
      this.next();
      this.expectTermAfter(t);
      this.enter(t);
      const child = this.parseUnary();
      this.depth--;
      return { type: "not", child };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Query {
    const t = this.peek();
    if (t.kind === "(") {
      this.next();
      this.enter(t);
      if (this.peek().kind === ")") {
        throw new QueryError(
          `Empty parentheses at position ${t.pos}: expected a term inside`,
          t.pos,
        );
      }
      const inner = this.parseExpr();
      const close = this.peek();
      if (close.kind !== ")") {
        if (close.kind === "end") {
          throw new QueryError(
            `Unbalanced parenthesis at position ${t.pos}: expected a matching ")" before the end of the query`,
            t.pos,
          );
        }
        this.unexpected(close, `an operator or ")"`);
      }
      this.next();
      this.depth--;
      return inner;
    }
    if (t.kind !== "word" || isBinaryOperator(t)) this.unexpected(t, "a term");
    if (this.peek(1).kind === "=") return this.parseClassic();
    return this.parsePrimitive();
  }

  /** True when `t` can begin a term, so adjacency continues the current intersection. */
  private startsTerm(t: Token): boolean {
    return t.kind === "(" || t.kind === "!" || (t.kind === "word" && !isBinaryOperator(t));
  }

  private expectTermAfter(op: Token): void {
    const t = this.peek();
    if (!this.startsTerm(t)) {
      if (t.kind === "end" || t.kind === ")") {
        throw new QueryError(
          `Dangling operator "${op.text}" at position ${op.pos}: expected a term after it, found ${
            describe(t)
          }`,
          op.pos,
        );
      }
      this.unexpected(t, `a term after "${op.text}"`);
    }
  }

  private enter(t: Token): void {
    this.depth++;
    if (this.depth > MAX_QUERY_DEPTH) {
      throw new QueryError(
        `Nesting too deep at position ${t.pos}: expected at most ${MAX_QUERY_DEPTH} levels of parentheses and negations`,
        t.pos,
      );
    }
  }

  private unexpected(t: Token, expected: string): never {
    if (t.kind === "end") {
      throw new QueryError(
        `Unexpected end of query at position ${t.pos}: expected ${expected}`,
        t.pos,
      );
    }
    if (t.kind === "word" || t.kind === "=") {
      const lead = isBinaryOperator(t) ? "Unexpected operator" : "Unexpected";
      throw new QueryError(
        `${lead} "${t.text}" at position ${t.pos}: expected ${expected}`,
        t.pos,
      );
    }
    throw new QueryError(
      `Unexpected "${t.text}" at position ${t.pos}: expected ${expected}`,
      t.pos,
    );
  }

  /** Next token as the argument of `keyword`; throws when it is missing. */
  argument(keyword: Token, what: string): Token {
    const t = this.peek();
    if (t.kind !== "word" || isBinaryOperator(t) || lower(t) === "not") {
      throw new QueryError(
        `Missing ${what} after "${keyword.text}" at position ${t.pos}: expected ${what}, found ${
          describe(t)
        }`,
        t.pos,
      );
    }
    return this.next();
  }

  // ---- classic dialect ----

  private parseClassic(): Query {
    const key = this.next();
    const eq = this.next();
    const value = this.argument({ ...eq, text: `${key.text}=` }, "a value");
    switch (key.text.toLowerCase()) {
      case "ip":
        return parseAddressTerm(value.text, value.pos);
      case "port": {
        const port = parseNumber(value, "port", 65535);
        return { type: "port", from: port, to: port };
      }
      case "protocol":
      case "proto":
        return { type: "proto", proto: parseProtocol(value), family: 0 };
      case "last": {
        const seconds = parseDuration(value.text, value.pos);
        return { type: "time", op: "after", at: this.now - seconds };
      }
      case "vlan":
        return { type: "vlan", vlan: parseNumber(value, "VLAN id", 4095) };
      case "sensor":
        return this.sensorTerm(key, value);
      default: {
        const record = parseRecordClassic(key, value, this, this.cidSeed);
        if (record !== null) return record;
        throw new QueryError(
          `Unknown key "${key.text}" at position ${key.pos}: expected one of ${CLASSIC_KEYS}`,
          key.pos,
        );
      }
    }
  }

  // ---- BPF subset ----

  private parsePrimitive(): Predicate {
    const t = this.next();
    const word = lower(t);
    switch (word) {
      case "host": {
        const arg = this.argument(t, "an IPv4 or IPv6 address");
        return hostPredicate(parseAddressOrThrow(arg.text, arg.pos));
      }
      case "net":
        return this.parseNet(t);
      case "port": {
        const port = parseNumber(this.argument(t, "a port number"), "port", 65535);
        return { type: "port", from: port, to: port };
      }
      case "portrange":
        return parsePortRange(this.argument(t, "a port range N-M"));
      case "proto":
      case "protocol":
        return { type: "proto", proto: parseProtocol(this.argument(t, "a protocol")), family: 0 };
      case "ip":
      case "ip6": {
        const family = word === "ip" ? 4 : 6;
        const n = this.peek();
        if (lower(n) === "proto" && this.peek(1).kind !== "=") {
          this.next();
          const proto = parseProtocol(this.argument(n, "a protocol"));
          // stenographer's `ip proto N` is the IP protocol of IPv4 and IPv6 alike (its `tcp` is
          // `ip proto 6`, and `ip proto 58` is how its users ask for ICMPv6); `ip6 proto` is IPv6.
          return { type: "proto", proto, family: family === 4 ? 0 : 6 };
        }
        return { type: "family", family };
      }
      case "tcp":
      case "udp":
      case "sctp":
        return { type: "proto", proto: PROTOCOL_NAMES[word], family: 0 };
      case "icmp":
        return { type: "proto", proto: 1, family: 4 };
      case "icmp6":
        return { type: "proto", proto: 58, family: 6 };
      case "vlan":
        return { type: "vlan", vlan: parseNumber(this.argument(t, "a VLAN id"), "VLAN id", 4095) };
      case "mpls": {
        const label = parseNumber(this.argument(t, "an MPLS label"), "MPLS label", 1048575);
        return { type: "mpls", label };
      }
      case "before":
      case "after":
        return this.parseTime(t, word);
      case "sensor":
        return this.sensorTerm(t, this.argument(t, "a sensor name"));
      case "src":
      case "dst":
        throw new QueryError(
          `Unsupported word "${t.text}" at position ${t.pos}: flow keys do not record direction, expected a direction-free primitive such as host or port`,
          t.pos,
        );
      default: {
        const record = parseRecordPrimitive(t, this, this.cidSeed);
        if (record !== null) return record;
        throw new QueryError(
          `Unknown word "${t.text}" at position ${t.pos}: expected a primitive (${PRIMITIVES}) or key=value (${CLASSIC_KEYS})`,
          t.pos,
        );
      }
    }
  }

  private parseNet(t: Token): AddressPredicate {
    const arg = this.argument(t, "a network such as 10.0.0.0/8");
    if (lower(this.peek()) === "mask") {
      const maskWord = this.next();
      const addr = parseAddressOrThrow(arg.text, arg.pos);
      const m = this.argument(maskWord, "a netmask");
      const mask = parseAddressOrThrow(m.text, m.pos);
      if (mask.family !== addr.family) {
        throw new QueryError(
          `Invalid netmask ${m.text} at position ${m.pos}: expected an IPv${addr.family} mask for ${arg.text}`,
          m.pos,
        );
      }
      const prefix = maskToPrefix(mask.family, mask.words);
      if (prefix < 0) {
        throw new QueryError(
          `Invalid netmask ${m.text} at position ${m.pos}: expected contiguous leading one bits`,
          m.pos,
        );
      }
      return cidrPredicate(addr.family, addr.words, prefix);
    }
    if (!arg.text.includes("/")) {
      // A bare address is a /32 or /128 network, as in tcpdump.
      return hostPredicate(parseAddressOrThrow(arg.text, arg.pos));
    }
    return parseCidr(arg.text, arg.pos);
  }

  private parseTime(t: Token, op: "before" | "after"): TimePredicate {
    const arg = this.argument(t, "a time (RFC 3339, YYYY-MM-DD or N[smhd] ago)");
    const absolute = parseRfc3339(arg.text);
    if (absolute !== null) return { type: "time", op, at: absolute };
    if (/^[0-9]+[a-zA-Z]/.test(arg.text) && !/[-:]/.test(arg.text)) {
      const seconds = parseDuration(arg.text, arg.pos);
      const ago = this.peek();
      if (lower(ago) !== "ago") {
        throw new QueryError(
          `Missing "ago" after duration ${arg.text} at position ${ago.pos}: expected "${op} ${arg.text} ago", found ${
            describe(ago)
          }`,
          ago.pos,
        );
      }
      this.next();
      return { type: "time", op, at: this.now - seconds };
    }
    throw new QueryError(
      `Invalid time "${arg.text}" at position ${arg.pos}: expected RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) or N[smhd] ago`,
      arg.pos,
    );
  }
}

function parseAddressOrThrow(text: string, pos: number): { family: Family; words: Words } {
  const a = parseAddress(text);
  if (a === null) {
    throw new QueryError(
      `Invalid address "${text}" at position ${pos}: expected an IPv4 or IPv6 address`,
      pos,
    );
  }
  return a;
}

/**
 * The network of `words`/`prefix`. Host bits are masked off, as stenographer does (its tests hold
 * `net 1.2.3.4/8` = 1.0.0.0/8); an IPv4-mapped IPv6 network (::ffff:0:0/96 and longer) is the IPv4
 * network, as stenographer reads `::ffff:a.b.c.d`.
 */
function cidrPredicate(family: Family, words: Words, prefix: number): AddressPredicate {
  const r = prefixRange({ family, words, prefix });
  if (family === 6 && prefix >= 96 && isV4Mapped(r.from)) {
    return cidrPredicate(4, [r.from[3], 0, 0, 0], prefix - 96);
  }
  return { type: "address", family, from: r.from, to: r.to };
}

/** True for ::ffff:a.b.c.d. */
function isV4Mapped(words: Words): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/** One address as a predicate: an IPv4-mapped IPv6 address is its IPv4 host. */
function hostPredicate(a: { family: Family; words: Words }): AddressPredicate {
  const words: Words = a.family === 6 && isV4Mapped(a.words) ? [a.words[3], 0, 0, 0] : a.words;
  const family = words === a.words ? a.family : 4;
  return { type: "address", family, from: words, to: words };
}

function parseCidr(text: string, pos: number): AddressPredicate {
  const slash = text.indexOf("/");
  const a = parseAddressOrThrow(text.slice(0, slash), pos);
  const lenText = text.slice(slash + 1);
  const bits = familyBits(a.family);
  if (!/^[0-9]{1,3}$/.test(lenText) || Number(lenText) > bits) {
    throw new QueryError(
      `Invalid prefix length "${lenText}" at position ${pos + slash + 1}: expected 0-${bits}`,
      pos + slash + 1,
    );
  }
  return cidrPredicate(a.family, a.words, Number(lenText));
}

/** `ip=` value: ADDR, ADDR-ADDR or ADDR/LEN. */
function parseAddressTerm(text: string, pos: number): AddressPredicate {
  if (text.includes("/")) return parseCidr(text, pos);
  const dash = text.indexOf("-");
  if (dash < 0) return hostPredicate(parseAddressOrThrow(text, pos));
  const from = hostPredicate(parseAddressOrThrow(text.slice(0, dash), pos));
  const to = hostPredicate(parseAddressOrThrow(text.slice(dash + 1), pos + dash + 1));
  if (from.family !== to.family) {
    throw new QueryError(
      `Invalid range ${text} at position ${pos}: expected both ends of the same family, found IPv${from.family} and IPv${to.family}`,
      pos,
    );
  }
  if (compareWords(from.from, to.from) > 0) {
    throw new QueryError(
      `Invalid range ${text} at position ${pos}: expected start <= end, found start above end`,
      pos,
    );
  }
  return { type: "address", family: from.family, from: from.from, to: to.from };
}

function parseNumber(t: Token, what: string, max: number): number {
  if (!/^[0-9]+$/.test(t.text)) {
    throw new QueryError(
      `Invalid ${what} "${t.text}" at position ${t.pos}: expected a number 0-${max}`,
      t.pos,
    );
  }
  const n = Number(t.text);
  if (n > max) {
    throw new QueryError(
      `Invalid ${what} ${t.text} at position ${t.pos}: expected 0-${max}`,
      t.pos,
    );
  }
  return n;
}

function parseProtocol(t: Token): number {
  const named = PROTOCOL_NAMES[t.text.toLowerCase()];
  if (named !== undefined && Object.hasOwn(PROTOCOL_NAMES, t.text.toLowerCase())) return named;
  if (!/^[0-9]+$/.test(t.text)) {
    throw new QueryError(
      `Invalid protocol "${t.text}" at position ${t.pos}: expected a number 0-255 or one of ${
        Object.keys(PROTOCOL_NAMES).join(", ")
      }`,
      t.pos,
    );
  }
  return parseNumber(t, "protocol", 255);
}

function parsePortRange(t: Token): Predicate {
  const m = /^([0-9]+)-([0-9]+)$/.exec(t.text);
  if (m === null) {
    throw new QueryError(
      `Invalid port range "${t.text}" at position ${t.pos}: expected N-M with 0 <= N <= M <= 65535`,
      t.pos,
    );
  }
  const from = parseNumber({ kind: "word", text: m[1], pos: t.pos }, "port", 65535);
  const to = parseNumber(
    { kind: "word", text: m[2], pos: t.pos + m[1].length + 1 },
    "port",
    65535,
  );
  if (from > to) {
    throw new QueryError(
      `Invalid port range ${t.text} at position ${t.pos}: expected start <= end, found start above end`,
      t.pos,
    );
  }
  return { type: "port", from, to };
}

/** `4h`, `45m`, `1h30m`, `2d` -> seconds. */
function parseDuration(text: string, pos: number): number {
  const fail = (): never => {
    throw new QueryError(
      `Invalid duration "${text}" at position ${pos}: expected a number followed by s, m, h or d (e.g. 4h, 45m, 1h30m)`,
      pos,
    );
  };
  if (!/^([0-9]+[smhdSMHD])+$/.test(text)) fail();
  let seconds = 0;
  for (const m of text.matchAll(/([0-9]+)([smhdSMHD])/g)) {
    seconds += Number(m[1]) * UNIT_SECONDS[m[2].toLowerCase()];
  }
  if (!(seconds <= MAX_DURATION_SECONDS)) {
    throw new QueryError(
      `Invalid duration "${text}" at position ${pos}: expected at most ${MAX_DURATION_SECONDS} seconds`,
      pos,
    );
  }
  return seconds;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * RFC 3339 date-time (zone required, fraction kept to the microsecond) or a bare date (UTC
 * midnight) -> seconds since the epoch; null when `text` is neither.
 */
function parseRfc3339(text: string): number | null {
  const m =
    /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2}))?$/
      .exec(text);
  if (m === null) return null;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > DAYS_IN_MONTH[month - 1]) return null;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (month === 2 && day === 29 && !leap) return null;
  let ms = Date.UTC(year, month - 1, day);
  if (year < 100) ms = new Date(ms).setUTCFullYear(year); // Date.UTC maps 0-99 to 1900-1999
  let micros = 0;
  if (m[4] !== undefined) {
    const [h, mi, s] = [Number(m[4]), Number(m[5]), Number(m[6])];
    if (h > 23 || mi > 59 || s > 60) return null; // 60: leap second
    ms += ((h * 60 + mi) * 60 + s) * 1000;
    micros = m[7] === undefined ? 0 : Number(m[7].slice(0, 6).padEnd(6, "0"));
    const zone = m[8];
    if (zone !== "Z" && zone !== "z") {
      const zh = Number(zone.slice(1, 3));
      const zm = Number(zone.slice(4, 6));
      if (zh > 23 || zm > 59) return null;
      const offset = (zh * 60 + zm) * 60000;
      ms += zone[0] === "+" ? -offset : offset;
    }
  }
  // Integer microseconds divided once: the same double as Date.now()/1000 for whole milliseconds.
  return (ms * 1000 + micros) / 1e6;
}
