/**
 * K-way merge of per-file packet cursors by exact timestamp (seconds, then nanoseconds; ties keep file
 * order). Files are opened lazily, in first-packet order, only once the merge reaches their start, so a
 * query over a day of files holds about one file per worker open at a time.
 */
import type { RecordView } from "../pcap/record_reader.ts";

/** A file's selected packets, read in order. */
export interface Cursor {
  /** Order of the file in the plan (tie-break). */
  rank: number;
  /** The file it reads (archive-relative), for reports. */
  file: string;
  /** The current record; valid until `advance()`. */
  head: RecordView;
  /** pcapng answers: the interface (link type, snaplen, resolution) of the cursor's file. */
  iface?: number;
  /** Current record's time as (seconds, nanoseconds). */
  sec: number;
  nsec: number;
  /** Moves to the next selected packet; false when there is none. */
  advance(): boolean;
  close(): void;
}

/** True when cursor a's head comes before b's. */
function before(a: Cursor, b: Cursor): boolean {
  if (a.sec !== b.sec) return a.sec < b.sec;
  if (a.nsec !== b.nsec) return a.nsec < b.nsec;
  return a.rank < b.rank;
}

/** A binary min-heap of cursors. */
export class CursorHeap {
  readonly #items: Cursor[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): Cursor | undefined {
    return this.#items[0];
  }

  push(cursor: Cursor): void {
    const items = this.#items;
    items.push(cursor);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  /** Re-sorts after the top cursor advanced (or removes it when `exhausted`). */
  fixTop(exhausted: boolean): void {
    const items = this.#items;
    if (exhausted) {
      const last = items.pop()!;
      if (items.length === 0) return;
      items[0] = last;
    }
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < items.length && before(items[left], items[least])) least = left;
      if (right < items.length && before(items[right], items[least])) least = right;
      if (least === i) return;
      [items[i], items[least]] = [items[least], items[i]];
      i = least;
    }
  }

  /** Closes every cursor still in the heap. */
  closeAll(): void {
    for (const cursor of this.#items.splice(0)) cursor.close();
  }
}
