/**
 * Log lines on stderr: gotm's `2017/08/29 17:45:58 message` by default, one JSON object per line with
 * `--log-format json`. Structured fields are kept as fields in JSON and appended as key=value in text.
 */
import type { LogFormat } from "./config.ts";

/** Structured values attached to a log line. */
export type LogFields = Record<string, string | number | boolean>;

let format: LogFormat = "text";
const encoder = new TextEncoder();

/** Chooses the output style for every later line. */
export function setLogFormat(next: LogFormat): void {
  format = next;
}

/** Writes one informational line. */
export function logInfo(message: string, fields?: LogFields): void {
  writeLine("info", message, fields);
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
export function formatLine(level: string, message: string, fields?: LogFields): string {
  const now = new Date();
  if (format === "json") {
    return JSON.stringify({ time: now.toISOString(), level, msg: message, ...fields });
  }
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp = `${now.getFullYear()}/${pad(now.getMonth() + 1)}/${pad(now.getDate())} ` +
    `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
  const extra = fields
    ? Object.entries(fields).map(([key, value]) => ` ${key}=${value}`).join("")
    : "";
  return `${stamp}${message === "" ? "" : " " + message}${extra}`;
}

function writeLine(level: string, message: string, fields?: LogFields): void {
  Deno.stderr.writeSync(encoder.encode(formatLine(level, message, fields) + "\n"));
}
