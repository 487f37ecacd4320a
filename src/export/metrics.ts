/**
 * The exporter's Prometheus series, registered on the sensor's registry and read at scrape time.
 */
import type { Registry } from "prom-client";
import { scrapedCounter, scrapedGauge } from "../server/metrics.ts";
import type { ExportStats } from "./exporter.ts";

/** Adds the export series to `registry`; `stats` is read on every scrape. */
export function registerExportMetrics(registry: Registry, stats: () => ExportStats): void {
  scrapedGauge(registry, {
    name: "cutcap_export_backlog_batches",
    help:
      "Export batches (one per finalized file or deletion) spooled on disk, waiting for ClickHouse",
  }, () => stats().backlogBatches);
  scrapedGauge(registry, {
    name: "cutcap_export_last_success_timestamp_seconds",
    help: "Unix time ClickHouse last took a batch; 0 before the first",
  }, () => stats().lastExportAt);
  const counters: [string, string, keyof ExportStats][] = [
    ["cutcap_export_rows_total", "Flow records ClickHouse took", "rowsSent"],
    ["cutcap_export_batches_total", "Batches ClickHouse took", "batchesSent"],
    [
      "cutcap_export_batches_skipped_total",
      "Batches skipped because ClickHouse already held them (a retry after a lost answer)",
      "batchesSkipped",
    ],
    ["cutcap_export_errors_total", "Failed attempts to send a batch", "errors"],
  ];
  for (const [name, help, field] of counters) {
    scrapedCounter(registry, { name, help }, () => stats()[field]);
  }
}
