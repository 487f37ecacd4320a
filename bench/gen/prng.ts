/**
 * Seeded pseudo-random numbers for the traffic generator: xoshiro128** seeded through splitmix32.
 * Deterministic across runs and platforms (32-bit integer arithmetic only), never Math.random,
 * so the same seed always yields the same capture file byte for byte.
 */

const TWO_POW_32 = 4294967296;

function splitmix32(state: Uint32Array): number {
  state[0] = (state[0] + 0x9e3779b9) >>> 0;
  let z = state[0];
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** A xoshiro128** generator; every method draws from the same stream. */
export class Prng {
  readonly #s = new Uint32Array(4);

  /** Seeds the generator; any finite number works (its integer part and fraction are mixed in). */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`Invalid seed ${seed}: expected a finite number`);
    const sm = new Uint32Array(1);
    // Mix the high and low halves so seeds beyond 2^32 still differ.
    sm[0] = (seed >>> 0) ^ Math.imul(Math.floor(seed / TWO_POW_32) >>> 0, 0x27d4eb2d);
    for (let i = 0; i < 4; i++) this.#s[i] = splitmix32(sm);
    // xoshiro must not start from the all-zero state.
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** Next 32-bit unsigned integer. */
  u32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of precision. */
  float(): number {
    return this.u32() / TWO_POW_32;
  }

  /** Uniform float in (0, 1]: safe to take the logarithm of. */
  floatOpen(): number {
    return (this.u32() + 1) / TWO_POW_32;
  }

  /** Uniform integer in [0, n) for 0 < n <= 2^32. */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Uniform integer in [lo, hi], both ends included. */
  range(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** Exponentially distributed value with the given mean. */
  exp(mean: number): number {
    return -Math.log(this.floatOpen()) * mean;
  }

  /** Pareto-distributed value >= xm with tail index alpha (heavier tail for smaller alpha). */
  pareto(xm: number, alpha: number): number {
    return xm * Math.pow(this.floatOpen(), -1 / alpha);
  }

  /** Log-normally distributed value with the given median and sigma of the underlying normal. */
  logNormal(median: number, sigma: number): number {
    // Box-Muller; the second value is thrown away to keep the stream simple.
    const r = Math.sqrt(-2 * Math.log(this.floatOpen()));
    return median * Math.exp(sigma * r * Math.cos(2 * Math.PI * this.float()));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
