/**
 * A SensorView without capture, for server tests: workers whose shared counters (`slots`, indexed by
 * `Counter`, read by name through the capture's own NamedCounters) the test fills in, a real catalog
 * over a temporary archive directory, and retention totals.
 */
import { Catalog, type CatalogEntry } from "../../src/archive/catalog.ts";
import { allocateCounters, NamedCounters } from "../../src/worker/counters.ts";
import type { RetentionStats, SensorView, WorkerView } from "../../src/server/view.ts";

/** A worker whose shared counter array the test writes. */
export interface FakeWorker extends WorkerView {
  slots: Float64Array;
}

/** A fake sensor whose parts tests change directly. */
export interface FakeSensor extends SensorView {
  workerList: FakeWorker[];
  retentionStats: RetentionStats;
  catalogInstance: Catalog;
  outDir: string;
  capturing: boolean;
}

/** Options of `fakeSensor`. */
export interface FakeSensorOptions {
  /** Archive directory (a fresh temporary one by default). */
  outDir?: string;
  /** (interface, worker) pairs; two workers on eth0 and one on eth1 by default; [] for serve. */
  workers?: [string, number][];
  capturing?: boolean;
}

/** Builds a fake sensor; every worker starts ready and not done, with zeroed counters. */
export function fakeSensor(options: FakeSensorOptions = {}): FakeSensor {
  const outDir = options.outDir ?? Deno.makeTempDirSync({ prefix: "cutcap-server-" });
  const pairs = options.workers ?? [["eth0", 0], ["eth0", 1], ["eth1", 0]];
  const workerList: FakeWorker[] = pairs.map(([label, index]) => {
    const slots = allocateCounters();
    return {
      label,
      index,
      slots,
      counters: new NamedCounters(slots),
      ready: true,
      done: false,
      openFile: null,
    };
  });
  let catalogInstance: Catalog | undefined;
  const sensor: FakeSensor = {
    startedAt: Date.now() / 1000 - 100,
    outDir,
    capturing: options.capturing ?? pairs.length > 0,
    libpcapVersion: "libpcap version 1.10.3 (with TPACKET_V3)",
    workerList,
    retentionStats: { deletedFiles: 0, deletedBytes: 0 },
    get catalogInstance(): Catalog {
      catalogInstance ??= Catalog.open(outDir);
      return catalogInstance;
    },
    workers: () => sensor.workerList,
    catalog: () => sensor.catalogInstance,
    retention: () => sensor.retentionStats,
  };
  return sensor;
}

/** A catalog entry for a file that need not exist (the server only reads entries). */
export function fakeEntry(
  path: string,
  firstTs: number,
  lastTs: number,
  bytes: number,
): CatalogEntry {
  return {
    path,
    iface: "eth0",
    worker: 0,
    firstTs,
    lastTs,
    packets: lastTs > 0 ? 10 : 0,
    flows: 1,
    bytesOnDisk: bytes,
    pcapBytes: bytes - 100,
    indexBytes: 100,
    linkType: 1,
    compress: "none",
  };
}

/** Parses Prometheus text exposition into `name{label="v",...}` → value (labels as written). */
export function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** Names of every metric family (# TYPE) and every sample in an exposition. */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) names.add(type[1]);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]);
  }
  return names;
}
