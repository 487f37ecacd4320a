/**
 * Histogram of flow sizes in bytes, recorded once per flow when the flow table removes it.
 *
 * Buckets are gotm's: upper bounds exponential from 1 KiB with factor 4, 15 buckets
 * (1 KiB, 4 KiB, 16 KiB, ..., 4^14 KiB = 256 GiB), plus the implicit +Inf bucket. A bound is
 * inclusive, as Prometheus' `le` label: a flow of exactly 1024 bytes lands in the 1 KiB bucket.
 *
 * Everything lives in one Float64Array so a worker can copy it to the main thread in one
 * message and the main thread can sum the workers' copies with {@linkcode FlowSizeHistogram.merge}.
 */

/** Number of finite buckets. */
export const FLOW_SIZE_BUCKET_COUNT = 15;

/** Upper bounds (inclusive, bytes) of the finite buckets: 1024 * 4^i for i in 0..14. */
export const FLOW_SIZE_BUCKETS: readonly number[] = Object.freeze(
  Array.from({ length: FLOW_SIZE_BUCKET_COUNT }, (_, i) => 1024 * 4 ** i),
);

/** Index in {@linkcode FlowSizeHistogram.values} of the count of flows above the last bound. */
export const FLOW_SIZE_OVERFLOW = FLOW_SIZE_BUCKET_COUNT;
/** Index in {@linkcode FlowSizeHistogram.values} of the sum of all observed sizes. */
export const FLOW_SIZE_SUM = FLOW_SIZE_BUCKET_COUNT + 1;
/** Index in {@linkcode FlowSizeHistogram.values} of the number of observed flows. */
export const FLOW_SIZE_COUNT = FLOW_SIZE_BUCKET_COUNT + 2;
/** Length of {@linkcode FlowSizeHistogram.values}. */
export const FLOW_SIZE_VALUES = FLOW_SIZE_BUCKET_COUNT + 3;

/** Flow-size histogram with gotm's buckets, stored in one Float64Array. */
export class FlowSizeHistogram {
  /**
   * Layout: [0..14] flows per bucket, NOT cumulative (bucket i holds sizes in
   * (bound[i-1], bound[i]]); [15] flows above the last bound; [16] sum of sizes; [17] count.
   */
  readonly values: Float64Array = new Float64Array(FLOW_SIZE_VALUES);

  /** Records one flow of `bytes` bytes. Allocates nothing. */
  observe(bytes: number): void {
    const v = this.values;
    let i = 0;
    let bound = 1024;
    while (i < FLOW_SIZE_BUCKET_COUNT && bytes > bound) {
      i++;
      bound *= 4;
    }
    v[i]++;
    v[FLOW_SIZE_SUM] += bytes;
    v[FLOW_SIZE_COUNT]++;
  }

  /** Number of observed flows. */
  get count(): number {
    return this.values[FLOW_SIZE_COUNT];
  }

  /** Sum of observed flow sizes in bytes. */
  get sum(): number {
    return this.values[FLOW_SIZE_SUM];
  }

  /**
   * Cumulative counts as Prometheus exposes them: entry i = flows with size <= bound i,
   * the last entry (index 15) = all flows (+Inf). Writes into `out` when given.
   */
  cumulative(out: Float64Array = new Float64Array(FLOW_SIZE_BUCKET_COUNT + 1)): Float64Array {
    let acc = 0;
    for (let i = 0; i <= FLOW_SIZE_BUCKET_COUNT; i++) {
      acc += this.values[i];
      out[i] = acc;
    }
    return out;
  }

  /** Adds another histogram's values (e.g. a copy received from a worker) into this one. */
  merge(other: Float64Array): void {
    if (other.length !== FLOW_SIZE_VALUES) {
      throw new RangeError(
        `Invalid flow size histogram length ${other.length}: expected ${FLOW_SIZE_VALUES}`,
      );
    }
    for (let i = 0; i < FLOW_SIZE_VALUES; i++) this.values[i] += other[i];
  }

  /** Zeroes every bucket, the sum and the count. */
  reset(): void {
    this.values.fill(0);
  }
}
