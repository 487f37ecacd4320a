/**
 * The `/status` report as HTML tables for a person: the body of the page's status view
 * (src/web/page.ts), styled by its stylesheet. Every value from interfaces and files is escaped.
 */
import type { Rates, StatusReport, WorkerStatus } from "./status.ts";

/** Renders the report's tables (summary, interfaces, workers). */
export function renderStatusSections(report: StatusReport): string {
  const state = report.ready
    ? `<span class="ok">ready</span>`
    : `<span class="bad">not ready</span><ul>${
      report.notReady.map((r) => `<li>${esc(r)}</li>`).join("")
    }</ul>`;
  const disk = report.disk === null
    ? "unknown"
    : `${bytes(report.disk.freeBytes)} free of ${
      bytes(report.disk.sizeBytes)
    } (${report.disk.freePercent}%)`;
  const archive = report.archive;
  const oldest = archive.oldestPacketTs === null
    ? "none"
    : `${time(archive.oldestPacketTs)} (${duration(archive.oldestPacketAgeSeconds ?? 0)} ago)`;
  const summary: [string, string][] = [
    ["State", state],
    ["Mode", report.capturing ? "capturing" : "serving an archive"],
    ["Up", `${duration(report.uptimeSeconds)} (since ${time(report.startedAt)})`],
    ["Archive", `${esc(report.outDir)}: ${plural(archive.files, "file")}, ${bytes(archive.bytes)}`],
    ["Oldest packet", oldest],
    ["Newest packet", archive.newestPacketTs === null ? "none" : time(archive.newestPacketTs)],
    ["Disk", disk],
    [
      "Retention",
      `${count(report.retention.deletedFiles)} files, ${
        bytes(report.retention.deletedBytes)
      } deleted`,
    ],
    ["Active flows", count(report.activeFlows)],
  ];
  const interfaces = report.interfaces.map((i) =>
    `<tr><td>${esc(i.name)}</td><td>${i.workers}</td><td>${yesNo(i.ready)}</td>${
      rateCells(i.rates)
    }` +
    `<td>${count(i.activeFlows)}</td><td>${count(i.pcapDropped + i.pcapIfDropped)}</td></tr>`
  ).join("");
  const workers = report.workers.map(workerRow).join("");
  return `<table class="kv">${
    summary.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("")
  }</table>
<h2>Interfaces</h2>
${
    report.interfaces.length === 0
      ? "<p>No capture workers.</p>"
      : `<table><tr><th>Interface</th>` +
        `<th>Workers</th><th>Ready</th>${RATE_HEADERS}<th>Flows</th><th>Drops</th></tr>${interfaces}</table>`
  }
<h2>Workers</h2>
${
    report.workers.length === 0 ? "<p>No capture workers.</p>" : `<table><tr><th>Worker</th>` +
      `<th class="l">State</th>${RATE_HEADERS}<th>Flows</th><th>Drops</th><th>Files</th><th>Errors</th>` +
      `<th>Last packet</th><th class="l">Writing</th></tr>${workers}</table>`
  }
<p><small>Report of ${time(report.now)}; rates over the last ${
    duration(report.workers[0]?.rates.intervalSeconds ?? 0)
  }. <a href="/status">JSON</a> · <a href="/metrics">metrics</a></small></p>
`;
}

const RATE_HEADERS = "<th>Packets/s</th><th>Bits/s</th><th>Written/s</th><th>Output</th>" +
  "<th>Drops/s</th>";

function rateCells(r: Rates): string {
  return `<td>${si(r.packetsPerSecond)}</td><td>${si(r.bytesPerSecond * 8)}</td>` +
    `<td>${si(r.writtenPacketsPerSecond)}</td><td>${r.outputPercent.toFixed(1)}%</td>` +
    `<td${r.dropsPerSecond > 0 ? ' class="bad"' : ""}>${si(r.dropsPerSecond)}</td>`;
}

function workerRow(w: WorkerStatus): string {
  const state = w.done
    ? `<span class="bad">stopped</span>${w.error ? `: ${esc(w.error)}` : ""}`
    : w.ready
    ? `<span class="ok">capturing</span>`
    : "starting";
  const writing = w.currentFile === null
    ? "—"
    : `${esc(w.currentFile.path)} <small>${bytes(w.currentFile.bytes)}` +
      `${w.currentFile.packets === null ? "" : `, ${plural(w.currentFile.packets, "packet")}`}` +
      `, ${plural(w.packetsUnflushed, "packet")} not yet written</small>`;
  return `<tr><td>${esc(w.interface)}/${w.worker}</td><td class="l">${state}</td>${
    rateCells(w.rates)
  }` +
    `<td>${count(w.activeFlows)}</td><td>${count(w.pcapDropped + w.pcapIfDropped)}</td>` +
    `<td>${count(w.filesWritten)}</td><td>${count(w.writeErrors)}</td>` +
    `<td class="t">${w.lastPacketTs === null ? "—" : time(w.lastPacketTs)}</td>` +
    `<td class="l">${writing}</td></tr>`;
}

/** Escapes text for HTML element content and attribute values. */
export function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function yesNo(value: boolean): string {
  return value ? `<span class="ok">yes</span>` : `<span class="bad">no</span>`;
}

/** Formatting shared with the page. */
export function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function plural(n: number, noun: string): string {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/** Formatting shared with the page. */
export function si(n: number): string {
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  const digits = n >= 100 || (i === 0 && (n >= 10 || Number.isInteger(n))) ? 0 : 1;
  return `${n.toFixed(digits)}${units[i]}`;
}

/** Formatting shared with the page. */
export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function time(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** Formatting shared with the page. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}
