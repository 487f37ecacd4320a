/**
 * The sensor's exporter: each finalized file's flow records (the `/flows` records of the whole
 * file) go to ClickHouse as one batch; retention deletions follow as batches of their own. Batches
 * are spooled on disk first (src/export/spool.ts), then sent one at a time, in order, by a loop on
 * the main thread that backs off (1 s doubling to 60 s) while ClickHouse is down. Capture never
 * waits for it: making a batch reads the file's index once, sending is asynchronous.
 *
 * Idempotent per file: before inserting a file's rows the sender counts the rows ClickHouse
 * already holds for (sensor, file) — a retry after a lost answer finds them all and skips; an
 * insert is one block (all or nothing on a MergeTree, and on one shard of a Distributed table,
 * which shards by file).
 *
 * Open files (published at each flush, src/store/open_file.ts): every OPEN_EXPORT_MS, each open
 * file that grew since its last export has all its flow rows (named by its final name) sent to
 * the open table with a new generation, then a row naming that generation its latest. Best
 * effort, never spooled: only while the spool is empty, and a failed one is simply tried again.
 * A finalized file's batch first marks the file closed (generation CLOSED_GENERATION): readers
 * take an open file's latest generation only while it is not closed (src/fleet/plan.ts), so its
 * rows count once, and the closed file's open rows are then purged.
 */
import { readFileIndex } from "../index/index_reader.ts";
import { indexPathFor } from "../archive/naming.ts";
import { fileFlows } from "../query/flows.ts";
import { logInfo, logWarn } from "../log.ts";
import { type ClickHouse, ClickHouseError, sqlString } from "./clickhouse.ts";
import { CLOSED_GENERATION, type FlowRow, flowRow, mergeTreeSchema, TABLES } from "./schema.ts";
import { OpenFiles } from "../query/open_files.ts";
import { type Batch, Spool } from "./spool.ts";

/** What the exporter needs to know. */
export interface ExporterOptions {
  clickhouse: ClickHouse;
  /** `--sensor-name`. */
  sensor: string;
  /** `--advertise-url`: where the fleet reaches this sensor's API ("" when unknown); read at
   * every heartbeat, as the server's port may be known only later. */
  advertiseUrl: () => string;
  /** Archive directory (the spool lives inside it). */
  outDir: string;
  /** The archive's open files, shared with the server's queries (default: the exporter's own). */
  openFiles?: OpenFiles;
  /** Shortest and longest wait between attempts while ClickHouse is down, ms. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How often a heartbeat row says the sensor is alive and how far behind it is, ms. */
  heartbeatMs?: number;
  /** How often open files that grew are exported, ms (0: never). */
  openExportMs?: number;
}

/** Default of `openExportMs`. */
const OPEN_EXPORT_MS = 5000;

/** Export counters for /metrics. */
export interface ExportStats {
  /** Batches in the spool. */
  backlogBatches: number;
  /** Flow rows ClickHouse took (since start). */
  rowsSent: number;
  /** Batches ClickHouse took (since start). */
  batchesSent: number;
  /** Batches found already present and skipped. */
  batchesSkipped: number;
  /** Failed attempts. */
  errors: number;
  /** Unix seconds of the last batch ClickHouse took; 0 before any. */
  lastExportAt: number;
  /** Exports of open files ClickHouse took (since start). */
  openExports: number;
}

/** Spools and sends a sensor's flow records; see the module comment. */
export class Exporter {
  readonly #ch: ClickHouse;
  readonly #opts: ExporterOptions;
  readonly #spool: Spool;
  readonly #stats: ExportStats;
  #schemaReady = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #closed = false;
  #backoffMs: number;
  #lastError = "";
  /** The last attempt failed in a way waiting does not mend (a refusal, an untrusted certificate). */
  #refused = false;
  #lastFile = "";
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #openTimer: ReturnType<typeof setInterval> | undefined;
  /** The open-file export running now, if any. */
  #openRun: Promise<void> | undefined;
  readonly #openFiles: OpenFiles;
  /** Per open file (final name): the flushed size its last export covered. */
  #openSent = new Map<string, number>();
  #generation = 0;

  /** The open files this exporter reads (the server's queries can share them). */
  get openFiles(): OpenFiles {
    return this.#openFiles;
  }

  constructor(opts: ExporterOptions) {
    this.#ch = opts.clickhouse;
    this.#opts = opts;
    this.#spool = new Spool(opts.outDir);
    this.#openFiles = opts.openFiles ?? new OpenFiles(opts.outDir);
    this.#backoffMs = opts.minBackoffMs ?? 1000;
    this.#stats = {
      backlogBatches: this.#spool.length,
      rowsSent: 0,
      batchesSent: 0,
      batchesSkipped: 0,
      errors: 0,
      lastExportAt: 0,
      openExports: 0,
    };
  }

  /** Starts the sender (sends what an earlier run left in the spool) and the heartbeat. */
  start(): void {
    this.#running ??= this.#loop();
    this.#beat().catch(() => {});
    this.#heartbeat = setInterval(
      () => this.#beat().catch(() => {}),
      this.#opts.heartbeatMs ?? 30_000,
    );
    const openMs = this.#opts.openExportMs ?? OPEN_EXPORT_MS;
    if (openMs > 0) {
      this.#openTimer = setInterval(() => {
        this.#openRun ??= this.#exportOpen().finally(() => this.#openRun = undefined);
      }, openMs);
    }
  }

  /** The spool's folder (capture gives it to --user). */
  get spoolDir(): string {
    return this.#spool.dir;
  }

  /** Counters for /metrics and /status. */
  stats(): ExportStats {
    return { ...this.#stats, backlogBatches: this.#spool.length };
  }

  /**
   * Spools the flow records of a file a worker just finalized, or crash recovery renamed into
   * view (path relative to the archive); `openName`: the name its open exports used, if another.
   */
  fileFinalized(
    path: string,
    origin: { iface: string; worker: number },
    openName = path,
  ): void {
    try {
      const index = readFileIndex(indexPathFor(`${this.#opts.outDir}/${path}`));
      const rows = [...fileFlows(index, path)].map((record) =>
        flowRow(record, { sensor: this.#opts.sensor, ...origin })
      );
      const batch: Batch = { op: "insert", sensor: this.#opts.sensor, file: path, rows };
      this.#append(openName === path ? batch : { ...batch, openName });
    } catch (error) {
      logWarn(`export: cannot read the index of ${path}: ${message(error)}`);
    }
  }

  /** Spools the news that retention deleted a file. */
  fileDeleted(path: string): void {
    this.#append({
      op: "delete",
      sensor: this.#opts.sensor,
      file: path,
      deletedAt: Math.floor(Date.now() / 1000),
    });
  }

  /**
   * Waits until the spool is empty or `timeoutMs` passed; true when it is empty. Gives up early
   * when ClickHouse refuses batches or its certificate is not trusted (waiting does not mend
   * a wrong password, schema or CA).
   */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#spool.length > 0 && Date.now() < deadline && !this.#refused) {
      this.#wake?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return this.#spool.length === 0;
  }

  /** Stops the sender after the batch in flight; the spool keeps the rest for the next run. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#openTimer);
    this.#wake?.();
    await this.#running;
    await this.#openRun;
  }

  #append(batch: Batch): void {
    try {
      this.#spool.append(batch);
    } catch (error) {
      logWarn(`export: cannot spool ${batch.file}: ${message(error)}`);
      return;
    }
    this.#wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      const next = this.#spool.peek();
      if (next === undefined) {
        await this.#sleep(60_000);
        continue;
      }
      try {
        await this.#send(next.batch);
        this.#spool.remove(next.seq);
        this.#stats.lastExportAt = Date.now() / 1000;
        this.#lastFile = next.batch.file;
        this.#backoffMs = this.#opts.minBackoffMs ?? 1000;
        if (this.#lastError !== "") logInfo("export: ClickHouse takes batches again");
        this.#lastError = "";
        this.#refused = false;
        if (this.#spool.length === 0) await this.#beat().catch(() => {});
      } catch (error) {
        this.#stats.errors++;
        const text = message(error);
        if (text !== this.#lastError) {
          logWarn(`export: ${text}; ${this.#spool.length} batch(es) wait in the spool`);
        }
        this.#lastError = text;
        this.#refused = error instanceof ClickHouseError && error.permanent;
        if (!(error instanceof ClickHouseError && error.answered)) this.#schemaReady = false;
        await this.#sleep(this.#backoffMs);
        this.#backoffMs = Math.min(this.#backoffMs * 2, this.#opts.maxBackoffMs ?? 60_000);
      }
    }
  }

  /** Creates the tables when this run has not yet (CREATE … IF NOT EXISTS: a no-op after that). */
  async #ensureSchema(): Promise<void> {
    if (this.#schemaReady) return;
    for (const statement of mergeTreeSchema()) await this.#ch.exec(statement);
    this.#schemaReady = true;
  }

  async #send(batch: Batch): Promise<void> {
    await this.#ensureSchema();
    if (batch.op === "delete") {
      await this.#ch.insert(TABLES.deleted, [{
        sensor: batch.sensor,
        file: batch.file,
        deleted_at: batch.deletedAt,
      }], SYNC_INSERT);
      this.#stats.batchesSent++;
      return;
    }
    // Closed first: from here the fleet reads the file's finalized rows only (none for a moment).
    const openNames = [...new Set([batch.file, batch.openName ?? batch.file])];
    await this.#ch.insert(
      TABLES.openFiles,
      openNames.map((file) => ({
        sensor: batch.sensor,
        file,
        generation: CLOSED_GENERATION,
        closed: 1,
      })),
      SYNC_INSERT,
    );
    const held = await this.#ch.select<{ n: string }>(
      `SELECT count() AS n FROM ${TABLES.flows} WHERE sensor = ${
        sqlString(batch.sensor)
      } AND file = ${sqlString(batch.file)}`,
    );
    const n = Number(held[0]?.n ?? 0);
    if (n === batch.rows.length) {
      this.#stats.batchesSkipped++;
      for (const file of openNames) await this.#purgeOpen(batch.sensor, file);
      return;
    }
    if (n !== 0) {
      throw new ClickHouseError(
        `ClickHouse holds ${n} of the ${batch.rows.length} rows of ${batch.file}: expected all or none (was the file exported by another sensor of the same name?)`,
        true,
      );
    }
    await this.#ch.insert(TABLES.flows, batch.rows, {
      ...SYNC_INSERT,
      max_insert_block_size: String(batch.rows.length + 1),
    });
    this.#stats.rowsSent += batch.rows.length;
    this.#stats.batchesSent++;
    for (const file of openNames) await this.#purgeOpen(batch.sensor, file);
  }

  /** Drops a closed file's open rows (a mutation; a Distributed table refuses it: kept there). */
  async #purgeOpen(sensor: string, file: string): Promise<void> {
    await this.#ch.exec(
      `ALTER TABLE ${TABLES.openFlows} DELETE WHERE sensor = ${sqlString(sensor)} AND file = ${
        sqlString(file)
      }`,
    ).catch(() => {});
  }

  /** Sends the rows of every open file that grew since its last export (see the module doc). */
  async #exportOpen(): Promise<void> {
    if (this.#closed || this.#spool.length > 0 || this.#lastError !== "") return;
    let inputs;
    try {
      inputs = await this.#openFiles.inputs();
    } catch {
      return; // A file rotated under us: the next round sees the new state.
    }
    const live = new Set<string>();
    try {
      for (const input of inputs) {
        if (input.file === null) continue; // finalized: its own batch sends it
        live.add(input.finalPath);
        const size = input.index.header.dataSize;
        if (this.#openSent.get(input.finalPath) === size) continue;
        const origin = {
          sensor: this.#opts.sensor,
          iface: input.index.header.iface,
          worker: input.index.header.worker,
        };
        const rows = [...fileFlows(input.index, input.finalPath)].map((r) => flowRow(r, origin));
        await this.#sendOpen(input.finalPath, rows);
        this.#openSent.set(input.finalPath, size);
      }
    } catch {
      // ClickHouse away: the sender's loop reports it; the next round tries again.
    } finally {
      for (const input of inputs) input.file?.close();
    }
    for (const file of this.#openSent.keys()) if (!live.has(file)) this.#openSent.delete(file);
  }

  /** One open file's rows under a new generation, then that generation made its latest. */
  async #sendOpen(file: string, rows: FlowRow[]): Promise<void> {
    await this.#ensureSchema();
    const generation = this.#generation = Math.max(this.#generation + 1, Date.now());
    await this.#ch.insert(TABLES.openFlows, rows.map((row) => ({ ...row, generation })), {
      ...SYNC_INSERT,
      max_insert_block_size: String(rows.length + 1),
    });
    await this.#ch.insert(TABLES.openFiles, [{
      sensor: this.#opts.sensor,
      file,
      generation,
      closed: 0,
    }], SYNC_INSERT);
    this.#stats.openExports++;
  }

  /** A row saying where the sensor is reached and how far behind its export is. */
  async #beat(): Promise<void> {
    // A quiet sensor (no file finalized yet) still appears in the fleet's /status.
    await this.#ensureSchema();
    await this.#ch.insert(TABLES.sensors, [{
      sensor: this.#opts.sensor,
      url: this.#opts.advertiseUrl(),
      at: Math.floor(Date.now() / 1000),
      backlog_files: this.#spool.length,
      last_file: this.#lastFile,
    }], SYNC_INSERT);
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }
}

/** A Distributed table forwards the insert before answering, so a count right after sees it. */
const SYNC_INSERT = { insert_distributed_sync: "1" };

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
