/**
 * Per-worker rates over the last minutes for the status view's sparklines: the workers'
 * counters sampled on a timer (the server starts and stops it), differences kept in a short ring.
 */
import type { SensorView } from "../server/view.ts";
import type { WorkerHistory } from "./source.ts";

/** Seconds between samples. */
export const SAMPLE_SECONDS = 2;
/** Samples kept per worker (5 minutes). */
const KEPT = 150;

interface Series {
  last: { packets: number; bytes: number; drops: number };
  packets: number[];
  bits: number[];
  drops: number[];
}

/** Recent rates of a sensor's workers. */
export class RateHistory {
  readonly #sensor: SensorView;
  readonly #series = new Map<string, Series>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(sensor: SensorView) {
    this.#sensor = sensor;
  }

  /** Samples every `SAMPLE_SECONDS` until `stop`. */
  start(): void {
    this.sample();
    const timer = setInterval(() => this.sample(), SAMPLE_SECONDS * 1000);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample of every worker's counters (the first one only sets the baseline). */
  sample(seconds = SAMPLE_SECONDS): void {
    for (const w of this.#sensor.workers()) {
      const c = w.counters;
      const now = {
        packets: c.packetsSeen,
        bytes: c.bytesSeen,
        drops: c.pcapDropped + c.pcapIfDropped,
      };
      const key = `${w.label}/${w.index}`;
      const series = this.#series.get(key);
      if (series === undefined) {
        this.#series.set(key, { last: now, packets: [], bits: [], drops: [] });
        continue;
      }
      push(series.packets, Math.max(0, now.packets - series.last.packets) / seconds);
      push(series.bits, Math.max(0, now.bytes - series.last.bytes) * 8 / seconds);
      push(series.drops, Math.max(0, now.drops - series.last.drops) / seconds);
      series.last = now;
    }
  }

  /** Every worker's rates, oldest sample first. */
  histories(): WorkerHistory[] {
    return [...this.#series].map(([worker, s]) => ({
      worker,
      intervalSeconds: SAMPLE_SECONDS,
      packetsPerSecond: [...s.packets],
      bitsPerSecond: [...s.bits],
      dropsPerSecond: [...s.drops],
    }));
  }
}

function push(ring: number[], value: number): void {
  ring.push(value);
  if (ring.length > KEPT) ring.shift();
}
