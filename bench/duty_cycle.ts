/**
 * What working in bursts costs on this machine, whatever the work: the same computation (a hash
 * loop over a small array, no I/O, no allocation) run back to back, then in bursts of ~0.5-1 ms
 * with a sleep between them, as a live capture worker works at a moderate packet rate (one ring
 * block, then a wait for the next). Prints the thread's CPU time (schedstat, ns) per burst for
 * both, in alternation. On a virtual CPU that idles between bursts the same instructions take
 * longer (clock and caches after the idle), which is part of any live capturer's CPU per packet
 * and of none measured reading a file at full speed (bench/RESULTS.md, entry 39).
 *
 * Run: taskset -c 1 deno run -A bench/duty_cycle.ts [SLEEP_MS=7] [WORDS=16384] [BURSTS=400]
 *
 * @module
 */

/** CPU time of the calling thread so far, in ns. */
function threadNs(): number {
  return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
}

/** Loop iterations in one burst: about 0.5-1 ms here. */
const BURST = 200_000;

/** `n` rounds of a hash that reads and writes `mem`; the result keeps it from being optimised out. */
function work(mem: Uint32Array, n: number): number {
  let h = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    const j = (h >>> 7) % mem.length;
    mem[j] = (mem[j] + h) | 0;
    h = Math.imul(h ^ mem[(j * 7) % mem.length], 0x85ebca6b) >>> 0;
  }
  return h;
}

if (import.meta.main) {
  const sleepMs = Number(Deno.args[0] ?? 7);
  const mem = new Uint32Array(Number(Deno.args[1] ?? 16384));
  const bursts = Number(Deno.args[2] ?? 400);
  let sink = work(mem, BURST * 50); // compiled and warm before the first measurement
  for (const mode of ["back to back", "in bursts", "back to back", "in bursts"]) {
    const start = threadNs();
    for (let b = 0; b < bursts; b++) {
      sink ^= work(mem, BURST);
      if (mode === "in bursts") await new Promise((resolve) => setTimeout(resolve, sleepMs));
    }
    const us = (threadNs() - start) / bursts / 1e3;
    console.log(`${mode.padEnd(12)} ${us.toFixed(1)} µs CPU per burst (sleep ${sleepMs} ms)`);
  }
  if (sink === 0) console.log("(sink 0)");
}
