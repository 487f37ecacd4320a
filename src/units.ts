/**
 * Durations and sizes as operators write them: `30s`, `5m`, `1h`, `2d` (gotm's style) and `1500`, `100MB`,
 * `1GiB`, `10%` (percent only where a caller allows it).
 */
import { UsageError } from "./cli/options.ts";

const DURATION_UNITS: Record<string, number> = {
  ms: 0.001,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
};

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses `90`, `30s`, `5m`, `1h30m`, `2d` into seconds; a bare number is seconds. */
export function parseDuration(text: string, what = "duration"): number {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let end = 0;
  for (let match = part.exec(trimmed); match; match = part.exec(trimmed)) {
    total += Number(match[1]) * DURATION_UNITS[match[2]];
    end = part.lastIndex;
  }
  if (trimmed === "" || end !== trimmed.length) {
    throw new UsageError(
      `Invalid ${what} "${text}": expected a number with a unit, like 30s, 5m, 1h`,
    );
  }
  return total;
}

/** Parses `1500`, `64KiB`, `100MB`, `1.5GiB` into bytes (decimal k/M/G, binary KiB/MiB/GiB). */
export function parseSize(text: string, what = "size"): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const factor = match ? SIZE_UNITS[match[2].toLowerCase()] : undefined;
  if (!match || factor === undefined) {
    throw new UsageError(
      `Invalid ${what} "${text}": expected bytes or a size like 64KiB, 100MB, 1GiB`,
    );
  }
  return Math.round(Number(match[1]) * factor);
}

/** A floor given as a percentage (`10%`) or as a size (`50GB`). */
export type SizeOrPercent = { percent: number } | { bytes: number };

/** Parses `10%` or a size. */
export function parseSizeOrPercent(text: string, what = "size"): SizeOrPercent {
  const match = /^(\d+(?:\.\d+)?)\s*%$/.exec(text.trim());
  if (!match) return { bytes: parseSize(text, what) };
  const percent = Number(match[1]);
  if (percent > 100) {
    throw new UsageError(`Invalid ${what} "${text}": expected a percentage 0-100%`);
  }
  return { percent };
}
