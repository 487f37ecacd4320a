/**
 * Option tables of every command: one table per command feeds both the parser (node:util's
 * parseArgs reads `type`, `short`, `multiple`, `default` and ignores the rest) and that command's
 * `--help` (`arg`, `help`, `shownDefault`), so the two cannot drift. Unknown options are named with
 * the closest known one; gotm's single-dash spellings get the cutcap option that replaces them.
 */

/** One option: parseArgs' fields plus what `--help` shows. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  default?: string | boolean;
  /** The value's placeholder in help (`SIZE`, `DUR`); string options only. */
  arg?: string;
  /** One line for help. */
  help: string;
  /** The default as help shows it, when the parser's default says less (computed at run time). */
  shownDefault?: string;
}

/** A command's option table, keyed by long name. */
export type OptionTable = Readonly<Record<string, OptionSpec>>;

/** A mistake on the command line (exit status 2), as opposed to a failure while running (1). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** gotm's flags (Go's flag package: one or two dashes) and what replaces each in cutcap. */
const GOTM_FLAGS: Readonly<Record<string, string>> = {
  interface: "--interface",
  filter: "--filter",
  write: "--out",
  bytecutoff: "--byte-cutoff",
  packetcutoff: "--packet-cutoff",
  flowtimeout: "--flow-timeout",
  rotationinterval: "--rotate-interval",
  compress: "--compress gzip",
  largeflowsize: "--large-flow-threshold (gotm's value is in megabytes: 1024 → 1024MB)",
  "metrics-address": "--listen",
  dumbno: "--large-flow-command",
  timeinterval: "nothing (cutcap sweeps idle flows by itself)",
};

/**
 * Checks every option word in `args` against `table` before parseArgs sees them: an unknown long
 * option, or a long name written with one dash (gotm's style, which parseArgs would read as a short
 * option and its value), throws a UsageError naming it and the option meant.
 */
export function checkOptionWords(args: readonly string[], table: OptionTable): void {
  for (let i = 0; i < args.length; i++) {
    const word = args[i];
    if (word === "--") return;
    if (word.startsWith("--")) {
      const name = word.slice(2).split("=")[0];
      const spec = table[name];
      if (spec === undefined) throw unknownOption(`--${name}`, name, table);
      if (spec.type === "string" && !word.includes("=")) i++;
    } else if (/^-[A-Za-z][A-Za-z-]{2,}(=|$)/.test(word)) {
      checkSingleDash(word, table);
    } else if (/^-[A-Za-z]$/.test(word)) {
      const short = shortSpec(word[1], table);
      if (short === undefined) throw unknownOption(word, word.slice(1), table);
      if (short.type === "string") i++;
    }
  }
}

/** `-interface`: a long name with one dash, or gotm's spelling of one, is refused with the fix. */
function checkSingleDash(word: string, table: OptionTable): void {
  const name = word.slice(1).split("=")[0];
  if (table[name] !== undefined) {
    throw new UsageError(`Option -${name} needs two dashes: --${name}`);
  }
  const gotm = GOTM_FLAGS[name.toLowerCase()];
  if (gotm !== undefined) {
    throw new UsageError(`Option -${name} is gotm's spelling: cutcap takes ${gotm}`);
  }
  // A short option with its value glued on (`-ivb`) is fine; anything else is not an option.
  if (shortSpec(word[1], table) === undefined) throw unknownOption(`-${name}`, name, table);
}

function shortSpec(letter: string, table: OptionTable): OptionSpec | undefined {
  return Object.values(table).find((spec) => spec.short === letter);
}

function unknownOption(word: string, name: string, table: OptionTable): UsageError {
  const gotm = GOTM_FLAGS[name.toLowerCase()];
  if (gotm !== undefined && table[name] === undefined) {
    return new UsageError(`Unknown option ${word}: gotm's -${name} is ${gotm} in cutcap`);
  }
  const closest = closestOption(name, table);
  const hint = closest === undefined
    ? " (--help lists the options)"
    : `: did you mean --${closest}?`;
  return new UsageError(`Unknown option ${word}${hint}`);
}

/** The known long name nearest to `name`, if it is near enough to be a typo. */
export function closestOption(name: string, table: OptionTable): string | undefined {
  return closestName(name, Object.keys(table));
}

/** The name in `names` nearest to `name`, if it is near enough to be a typo. */
export function closestName(name: string, names: readonly string[]): string | undefined {
  if (name.length < 3) return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of names) {
    const distance = editDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/** Levenshtein distance (insert, delete, substitute), one row at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min(substitute, previous[j] + 1, row[j - 1] + 1));
    }
    previous = row;
  }
  return previous[b.length];
}

/** The options part of a command's help: one aligned line per option, defaults in brackets. */
export function formatOptions(table: OptionTable): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : "    "}--${name}${
      spec.arg ? ` ${spec.arg}` : ""
    }`;
    const shown = spec.shownDefault ??
      (typeof spec.default === "string" && spec.default !== "" ? spec.default : undefined);
    return { flag, text: shown === undefined ? spec.help : `${spec.help} [${shown}]` };
  });
  rows.push({ flag: "-h, --help", text: "this help" });
  const width = Math.min(34, Math.max(...rows.map((r) => r.flag.length)) + 2);
  return rows.map(({ flag, text }) =>
    flag.length + 2 > width
      ? `  ${flag}\n  ${" ".repeat(width)}${text}`
      : `  ${flag.padEnd(width)}${text}`
  ).join("\n");
}
