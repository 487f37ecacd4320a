/**
 * Log lines on stderr: gotm's `2017/08/29 17:45:58 message` by default, one JSON object per line with
 * `--log-format json`. Structured fields are kept as fields in JSON and appended as key=value in text.
 */
import type { LogFormat } from "./config.ts";

/** Structured values attached to a log line. */
export type LogFields = Record<string, string | number | boolean>;

/** How a line reads in text, where it differs from JSON. */
export interface TextStyle {
  /** Fields written right after the message without their key (`moved /path packets=3`). */
  inline?: string[];
  /** The message is left out of text (gotm's stats lines start with their fields). */
  bare?: boolean;
}

let format: LogFormat = "text";
const encoder = new TextEncoder();

/** Chooses the output style for every later line. */
export function setLogFormat(next: LogFormat): void {
  format = next;
}

/** Writes one informational line. */
export function logInfo(message: string, fields?: LogFields, style?: TextStyle): void {
  writeLine("info", message, fields, style);
}

/** Writes one warning line (something went wrong, cutcap carries on). */
export function logWarn(message: string, fields?: LogFields): void {
  writeLine("warn", message, fields);
}

/** Writes one error line. */
export function logError(message: string, fields?: LogFields): void {
  writeLine("error", message, fields);
}

/** Formats a line; exported for workers, which hand finished lines to the main thread. */
export function formatLine(
  level: string,
  message: string,
  fields?: LogFields,
  style: TextStyle = {},
): string {
  const now = new Date();
  if (format === "json") {
    return JSON.stringify({ time: now.toISOString(), level, msg: message, ...fields });
  }
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}/${pad(now.getMonth() + 1)}/${pad(now.getDate())} ` +
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
  const inline = style.inline ?? [];
  const words = style.bare || message === "" ? [] : [message];
  for (const key of inline) if (fields?.[key] !== undefined) words.push(String(fields[key]));
  for (const [key, value] of Object.entries(fields ?? {})) {
    if (!inline.includes(key)) words.push(`${key}=${value}`);
  }
  return [stamp, ...words].join(" ");
}

function writeLine(level: string, message: string, fields?: LogFields, style?: TextStyle): void {
  Deno.stderr.writeSync(encoder.encode(formatLine(level, message, fields, style) + "\n"));
}

/** An error's message and its causes' ("fetch failed: ... invalid peer certificate: UnknownIssuer"). */
export function errorCauses(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && parts.length < 5;) {
    const text = e instanceof Error ? e.message : String(e);
    if (!parts.some((p) => p.includes(text))) parts.push(text);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(": ");
}
