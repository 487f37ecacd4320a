/**
 * The export spool: batches waiting for ClickHouse, one durable file each under
 * `<out>/.cutcap-export/`, named by a sequence number so they are sent in the order they were made
 * (a file's rows before its deletion). A batch is removed only after ClickHouse took it, so a
 * crash, a restart or an outage of any length loses nothing.
 */
import { writeFileDurably } from "../index/index_builder.ts";
import type { FlowRow } from "./schema.ts";
import { SPOOL_DIR } from "../archive/naming.ts";

/** One unit of export work. */
export type Batch =
  /** The flow rows of one finalized file. */
  | {
    op: "insert";
    sensor: string;
    file: string;
    rows: FlowRow[];
    /** A file crash recovery renamed: the name its open exports used, when not `file`. */
    openName?: string;
  }
  /** Retention deleted the file: the fleet must stop naming it. */
  | { op: "delete"; sensor: string; file: string; deletedAt: number };

/** A batch with its place in the spool. */
export interface SpooledBatch {
  seq: number;
  batch: Batch;
}

const NAME = /^(\d{12})\.json$/;

/** The batches on disk, oldest first; appended to by the main thread, drained by the sender. */
export class Spool {
  readonly dir: string;
  #seqs: number[];
  #next: number;

  constructor(outDir: string) {
    this.dir = `${outDir}/${SPOOL_DIR}`;
    // Owner-only like the archive's folders (0750); capture gives it to --user before dropping.
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    this.#seqs = [];
    for (const e of Deno.readDirSync(this.dir)) {
      const m = e.isFile ? NAME.exec(e.name) : null;
      if (m) this.#seqs.push(Number(m[1]));
    }
    this.#seqs.sort((a, b) => a - b);
    this.#next = (this.#seqs.at(-1) ?? 0) + 1;
  }

  /** Batches waiting. */
  get length(): number {
    return this.#seqs.length;
  }

  /** Writes a batch durably at the end of the queue. */
  append(batch: Batch): void {
    const seq = this.#next++;
    writeFileDurably(this.#path(seq), new TextEncoder().encode(JSON.stringify(batch)));
    this.#seqs.push(seq);
  }

  /** The oldest batch, if any (read from disk). */
  peek(): SpooledBatch | undefined {
    const seq = this.#seqs[0];
    if (seq === undefined) return undefined;
    return { seq, batch: JSON.parse(Deno.readTextFileSync(this.#path(seq))) as Batch };
  }

  /** Removes a batch ClickHouse took. */
  remove(seq: number): void {
    Deno.removeSync(this.#path(seq));
    this.#seqs = this.#seqs.filter((s) => s !== seq);
  }

  #path(seq: number): string {
    return `${this.dir}/${String(seq).padStart(12, "0")}.json`;
  }
}
