/**
 * The k-way merge's heap (src/query/merge.ts) on hand-made cursors: packets come out by time
 * (seconds, then nanoseconds), ties in plan order, exhausted cursors leave, closeAll closes the rest.
 */
import assert from "node:assert/strict";
import { type Cursor, CursorHeap } from "../../src/query/merge.ts";
import type { RecordView } from "../../src/pcap/record_reader.ts";

/** A cursor over `times` ([sec, nsec] pairs, in order); `closed` counts its close() calls. */
function cursor(rank: number, times: [number, number][]): Cursor & { closed: number } {
  const head: RecordView = {
    bytes: new Uint8Array(0),
    at: 0,
    tsSec: 0,
    tsFrac: 0,
    caplen: 0,
    wireLen: 0,
  };
  let next = 0;
  const c = {
    rank,
    file: `f${rank}`,
    head,
    sec: 0,
    nsec: 0,
    closed: 0,
    advance(): boolean {
      if (next >= times.length) return false;
      [c.sec, c.nsec] = times[next++];
      return true;
    },
    close(): void {
      c.closed++;
    },
  };
  return c;
}

/** Drains the heap as execute.ts does: take the top, advance it, fix the heap. */
function drain(heap: CursorHeap): string[] {
  const out: string[] = [];
  for (let top = heap.peek(); top !== undefined; top = heap.peek()) {
    out.push(`${top.file}@${top.sec}.${top.nsec}`);
    heap.fixTop(!top.advance());
  }
  return out;
}

Deno.test("merge: packets leave by seconds, then nanoseconds, ties in plan order", () => {
  const heap = new CursorHeap();
  const cursors = [
    cursor(3, [[10, 5], [11, 0], [12, 0]]),
    cursor(1, [[10, 5], [10, 999_999_999], [12, 0]]),
    cursor(2, [[9, 0], [10, 5], [13, 1]]),
  ];
  for (const c of cursors) {
    assert.ok(c.advance());
    heap.push(c);
  }
  assert.equal(heap.size, 3);
  assert.deepEqual(drain(heap), [
    "f2@9.0",
    "f1@10.5",
    "f2@10.5",
    "f3@10.5",
    "f1@10.999999999",
    "f3@11.0",
    "f1@12.0",
    "f3@12.0",
    "f2@13.1",
  ]);
  assert.equal(heap.size, 0);
  assert.equal(heap.peek(), undefined);
});

Deno.test("merge: a heap of many cursors gives the same order as a stable sort", () => {
  // 40 cursors of 25 packets each at pseudo-random times with many equal ones.
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const all: { rank: number; sec: number; nsec: number }[] = [];
  const heap = new CursorHeap();
  for (let rank = 1; rank <= 40; rank++) {
    const times: [number, number][] = [];
    let sec = 100;
    for (let i = 0; i < 25; i++) {
      sec += Math.floor(rand() * 3);
      times.push([sec, Math.floor(rand() * 4) * 250]);
      times.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    }
    for (const [s, n] of times) all.push({ rank, sec: s, nsec: n });
    const c = cursor(rank, times);
    c.advance();
    heap.push(c);
  }
  all.sort((a, b) => a.sec - b.sec || a.nsec - b.nsec || a.rank - b.rank);
  const expected = all.map((p) => `f${p.rank}@${p.sec}.${p.nsec}`);
  assert.equal(expected.length, 1000);
  assert.deepEqual(drain(heap), expected);
});

Deno.test("merge: closeAll closes every cursor still in the heap, once, and empties it", () => {
  const heap = new CursorHeap();
  const a = cursor(1, [[1, 0]]);
  const b = cursor(2, [[2, 0], [3, 0]]);
  const c = cursor(3, [[4, 0]]);
  for (const x of [a, b, c]) {
    x.advance();
    heap.push(x);
  }
  heap.fixTop(!heap.peek()!.advance()); // a is exhausted and leaves (its owner closes it)
  assert.equal(heap.size, 2);
  heap.closeAll();
  assert.equal(heap.size, 0);
  assert.deepEqual([a.closed, b.closed, c.closed], [0, 1, 1]);
  heap.closeAll();
  assert.deepEqual([a.closed, b.closed, c.closed], [0, 1, 1]);
});
